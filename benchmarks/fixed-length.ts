// Answers of a chosen length from a checkpoint with random weights (the
// generated 3B-shaped one, or the tiny one), shared by the decode benchmark
// (gpu-decode.ts) and the serving benchmark (concurrency.ts).
//
// Random weights never write a COCO answer of a chosen length, so the length
// is set by the request instead:
//  - a one-phrase polygon grammar: after `<|object_ref_start|>person…
//    <|box_start|>` every step allows the 1000 coordinates and the few
//    structural ids, so the (greedy) model keeps writing coordinates, and the
//    grammar's budget rule closes the answer on the last tokens that
//    maxNewTokens leaves;
//  - no stop ids: should the model close the answer early, it goes on to
//    maxNewTokens (the grammar then allows only <|im_end|>), so every request
//    generates exactly maxNewTokens tokens.
// The answer parses as polygons (task ocr_polygon): one per answer, more
// when the model writes an item separator.
import { compileGrammar } from '../lib/grammar/index.js';
import type { TokenRequest } from '../lib/engine.js';
import type { RexTokenizer } from '../lib/tokenizer.js';

/** Greedy with the reference's repetition penalty. */
export const GREEDY = { temperature: 0, repetitionPenalty: 1.05 } as const;

/** The phrase the fixed-length polygon answers use. */
export const FIXED_LENGTH_PHRASE = 'person';

/** The task whose parser reads a fixed-length answer (polygons under a free phrase). */
export const FIXED_LENGTH_PARSE_TASK = { task: 'ocr_polygon', granularity: 'word' } as const;

/** The one-phrase polygon grammar, as the JSON text a TokenRequest carries. */
export async function fixedLengthGrammar(tokenizer: RexTokenizer): Promise<string> {
  return JSON.stringify(await compileGrammar({ syntax: 'groups', kind: 'polygon', phrases: [FIXED_LENGTH_PHRASE] }, tokenizer));
}

/** `base` (prompt and image) answered by exactly `maxNewTokens` tokens of the fixed-length grammar, greedy. */
export function fixedLengthRequest<T extends Pick<TokenRequest, 'promptIds' | 'image'>>(
  base: T,
  grammar: string,
  maxNewTokens: number,
  options: { scores: boolean; jumpForward: boolean },
): T & TokenRequest {
  return {
    ...base,
    maxNewTokens,
    stopTokenIds: [],
    grammar,
    sampling: GREEDY,
    scores: options.scores,
    jumpForward: options.jumpForward,
  };
}

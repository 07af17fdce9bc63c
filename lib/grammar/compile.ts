// compileGrammar: a task's output grammar as token ids, for the core's
// constrained sampler (native/sampling/grammar.h). Every separator, phrase and
// trigger is tokenized *between* the tokens that surround it in a real output
// (", " between two coordinates is ",", "Ġ"; never a single id), because BPE
// merges across neighbours; the core then walks these sequences as tries.
//
// Keypoint output is JSON in a ```json fence, and BPE merges JSON punctuation
// with its neighbours in too many ways to list as token sequences. So the
// keypoint grammar ("keypoint_json") is character-level instead: it hands the
// core every ordinary token whose decoded text is JSON-safe, with that text,
// and the core runs the schema (REXOMNI.md "Output") as an automaton over
// characters, coordinates as tokens (native/sampling/grammar_keypoint.h).
// Whitespace and the fence stay free; key order is the reference's.
import { RexOmniError, invalidType, outOfRange } from '../errors.js';
import { COORDINATE_BINS, type RexTokenizer } from '../tokenizer.js';
import type { GrammarJson, GrammarOptions, GrammarTaskInfo, IdRangeJson } from './types.js';

/** What the compiler uses of a tokenizer (RexTokenizer fits). */
export type GrammarTokenizer = Pick<RexTokenizer, 'encode' | 'ids' | 'coordinateIds' | 'idsWithTextContaining' | 'asciiTokenTexts'>;

/** "To the end of the vocabulary" in a banned range; the core clamps it. */
export const END_OF_VOCAB = 2 ** 31 - 1;
export const DEFAULT_MAX_PHRASE_TOKENS = 128;

/** Separators between two items (REXOMNI.md: "," from training, ", " from the reference parser). */
export const ITEM_SEPARATORS = [',', ', '] as const;
/** Separators between two groups. */
export const GROUP_SEPARATORS = [', '] as const;

/**
 * The ids of `text` where it sits between `prefix` and `suffix`: encodes the
 * three together and strips the ids of each neighbour, which must stay intact.
 * Returns null when a neighbour merges with `text` (that context can't be cut).
 */
export async function encodeBetween(
  tokenizer: GrammarTokenizer,
  prefix: string,
  text: string,
  suffix: string,
): Promise<number[] | null> {
  const [before, after, whole] = await Promise.all([
    tokenizer.encode(prefix),
    tokenizer.encode(suffix),
    tokenizer.encode(prefix + text + suffix),
  ]);
  if (whole.length < before.length + after.length) return null;
  const head = before.every((id, i) => whole[i] === id);
  const tail = after.every((id, i) => whole[whole.length - after.length + i] === id);
  return head && tail ? whole.slice(before.length, whole.length - after.length) : null;
}

async function mustEncodeBetween(tokenizer: GrammarTokenizer, prefix: string, text: string, suffix: string): Promise<number[]> {
  const ids = await encodeBetween(tokenizer, prefix, text, suffix);
  if (ids === null || ids.length === 0) {
    throw new RexOmniError(
      'ERR_REX_TOKENIZER',
      `compileGrammar: expected ${JSON.stringify(text)} to tokenize on its own between ${JSON.stringify(prefix)} and ` +
        `${JSON.stringify(suffix)} but got ${ids === null ? 'a merge across the boundary' : 'no tokens'}`,
    );
  }
  return ids;
}

function uniqueSequences(seqs: readonly number[][]): number[][] {
  const seen = new Set<string>();
  return seqs.filter((s) => {
    const key = s.join(',');
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function validateOptions(options: GrammarOptions): Required<GrammarOptions> {
  if (typeof options !== 'object' || options === null) {
    throw invalidType('compileGrammar(options)', 'an object', options);
  }
  const count = (name: keyof GrammarOptions, fallback: number): number => {
    const value = options[name] ?? fallback;
    if (typeof value !== 'number') throw invalidType(`compileGrammar(options.${name})`, 'a number', value);
    if (!Number.isInteger(value) || value < 0 || value > END_OF_VOCAB) {
      throw outOfRange(`compileGrammar(options.${name})`, 'an integer >= 0', value);
    }
    return value;
  };
  const forbid = options.forbidDuplicateBoxes ?? false;
  if (typeof forbid !== 'boolean') {
    throw invalidType('compileGrammar(options.forbidDuplicateBoxes)', 'a boolean', forbid);
  }
  const maxPolygonCoords = count('maxPolygonCoords', 0);
  if (maxPolygonCoords !== 0 && (maxPolygonCoords < 6 || maxPolygonCoords % 2 !== 0)) {
    throw outOfRange('compileGrammar(options.maxPolygonCoords)', '0 or an even integer >= 6', maxPolygonCoords);
  }
  return {
    maxPredictions: count('maxPredictions', 0),
    forbidDuplicateBoxes: forbid,
    maxPhraseTokens: count('maxPhraseTokens', DEFAULT_MAX_PHRASE_TOKENS),
    maxPolygonCoords,
  };
}

function validateTaskInfo(task: GrammarTaskInfo): void {
  if (typeof task !== 'object' || task === null) throw invalidType('compileGrammar(task)', 'an object', task);
  if (task.syntax !== 'groups' && task.syntax !== 'keypoint-json') {
    throw outOfRange('compileGrammar(task.syntax)', '"groups" or "keypoint-json"', task.syntax);
  }
  const kinds = task.syntax === 'groups' ? ['box', 'point', 'polygon'] : ['keypoints'];
  if (!kinds.includes(task.kind)) {
    throw outOfRange('compileGrammar(task.kind)', kinds.map((k) => JSON.stringify(k)).join(' or '), task.kind);
  }
  if (task.phrases !== null && task.phrases !== undefined) {
    if (!Array.isArray(task.phrases)) throw invalidType('compileGrammar(task.phrases)', 'an array of strings or null', task.phrases);
    for (const phrase of task.phrases) {
      if (typeof phrase !== 'string' || phrase.length === 0) {
        throw invalidType('compileGrammar(task.phrases)', 'non-empty strings', phrase);
      }
    }
  }
}

/** The coordinate ids as one range; they must be contiguous ("<k>" = first + k). */
function coordinateRange(tokenizer: GrammarTokenizer): { first: number; count: number } {
  const ids = tokenizer.coordinateIds;
  const first = ids[0]!;
  ids.forEach((id, bin) => {
    if (id !== first + bin) {
      throw new RexOmniError(
        'ERR_REX_TOKENIZER',
        `compileGrammar: expected coordinate "<${bin}>" at id ${first + bin} (contiguous after "<0>") but got ${id}`,
      );
    }
  });
  return { first, count: COORDINATE_BINS };
}

/** Every special id and everything after it: no free text may use them. */
function specialFloor(tokenizer: GrammarTokenizer): number {
  return Math.min(...Object.values(tokenizer.ids));
}

/**
 * Compiles the output grammar of one task into plain data for the core.
 * Constrained decoding is the default; a caller with `constrained: false`
 * simply passes no grammar.
 */
export async function compileGrammar(
  task: GrammarTaskInfo,
  tokenizer: GrammarTokenizer,
  options: GrammarOptions = {},
): Promise<GrammarJson> {
  validateTaskInfo(task);
  const opts = validateOptions(options);
  const ids = tokenizer.ids;
  const coords = coordinateRange(tokenizer);
  const floor = specialFloor(tokenizer);
  const c0 = '<12>';
  const c1 = '<34>';

  const grammar: GrammarJson = {
    mode: 'groups',
    coord_first: coords.first,
    coord_count: coords.count,
    stop_ids: [ids.imEnd],
    ref_start: ids.objectRefStart,
    ref_end: ids.objectRefEnd,
    box_start: ids.boxStart,
    box_end: ids.boxEnd,
    none_tokens: [],
    item_separators: [],
    group_separators: [],
    arity: 'box',
    max_item_coords: 0,
    phrase_mode: 'free',
    phrases: [],
    free_text_banned: [],
    max_phrase_tokens: opts.maxPhraseTokens,
    max_predictions: opts.maxPredictions,
    forbid_duplicate_boxes: opts.forbidDuplicateBoxes,
    runs: [],
    coords_only_in_runs: false,
    json_vocab: '',
  };

  if (task.syntax === 'keypoint-json') {
    grammar.mode = 'keypoint_json';
    grammar.json_vocab = keypointVocab(tokenizer, floor, coords);
    return grammar;
  }

  const { boxStart, boxEnd, objectRefStart, objectRefEnd } = specialTexts();
  grammar.arity = task.kind as GrammarJson['arity'];
  grammar.max_item_coords = task.kind === 'polygon' ? opts.maxPolygonCoords : 0;
  grammar.none_tokens = await mustEncodeBetween(tokenizer, boxStart, 'None', boxEnd);
  grammar.item_separators = uniqueSequences(
    await Promise.all(ITEM_SEPARATORS.map((s) => mustEncodeBetween(tokenizer, c0, s, c1))),
  );
  grammar.group_separators = uniqueSequences(
    await Promise.all(GROUP_SEPARATORS.map((s) => mustEncodeBetween(tokenizer, boxEnd, s, objectRefStart))),
  );
  // Free text: nothing special, no coordinate (the core also bans the structural ids itself),
  // and no '<': the reference's parser reads a phrase as [^<]+.
  grammar.free_text_banned = mergeRanges([
    [coords.first, coords.first + coords.count],
    [floor, END_OF_VOCAB],
    ...tokenizer.idsWithTextContaining('<').map((id): IdRangeJson => [id, id + 1]),
  ]);
  const phrases = task.phrases ?? [];
  if (phrases.length > 0) {
    grammar.phrase_mode = 'fixed';
    grammar.phrases = uniqueSequences(
      await Promise.all(phrases.map((p) => mustEncodeBetween(tokenizer, objectRefStart, p, objectRefEnd))),
    );
  }
  return grammar;
}

function specialTexts() {
  return {
    boxStart: '<|box_start|>',
    boxEnd: '<|box_end|>',
    objectRefStart: '<|object_ref_start|>',
    objectRefEnd: '<|object_ref_end|>',
  };
}

function mergeRanges(ranges: IdRangeJson[]): IdRangeJson[] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: IdRangeJson[] = [];
  for (const [begin, end] of sorted) {
    const last = out[out.length - 1];
    if (last && begin <= last[1]) last[1] = Math.max(last[1], end);
    else out.push([begin, end]);
  }
  return out;
}

/** Characters a keypoint JSON token may hold (REXOMNI.md "Output": keys, names, coordinates' spaces, punctuation, the fence). */
export const isJsonSafeText = (text: string): boolean => /^[A-Za-z0-9 \n\t{}:,"`_'-]+$/.test(text);

/** The single characters that must exist as tokens so the core can always close the JSON. */
export const KEYPOINT_CLOSING_CHARS = '{}":, \n`bboxkeypointsunvisiblejson';

/**
 * The keypoint_json candidates: every ordinary token with JSON-safe text
 * (never a special or coordinate id), as "ID:TEXT|" entries (types.ts).
 */
function keypointVocab(tokenizer: GrammarTokenizer, floor: number, coords: { first: number; count: number }): string {
  const vocab = tokenizer
    .asciiTokenTexts(isJsonSafeText)
    .filter(([id]) => id < floor && (id < coords.first || id >= coords.first + coords.count));
  const singles = new Set(vocab.filter(([, text]) => text.length === 1).map(([, text]) => text));
  const missing = [...new Set(KEYPOINT_CLOSING_CHARS)].filter((ch) => !singles.has(ch));
  if (missing.length > 0) {
    throw new RexOmniError(
      'ERR_REX_TOKENIZER',
      `compileGrammar: expected single-character tokens for ${JSON.stringify(KEYPOINT_CLOSING_CHARS)} but got none for ${JSON.stringify(missing.join(''))}`,
    );
  }
  return vocab.map(([id, text]) => `${id}:${text}|`).join('');
}

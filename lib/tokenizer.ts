// The Rex-Omni tokenizer: Hugging Face's `tokenizers` over the checkpoint's
// tokenizer.json, plus what Rex-Omni needs on top. The 1000 coordinate tokens
// "<0>".."<999>" and the chat/vision/box special tokens are discovered by their
// content, never hard-coded; a tokenizer lacking any of them is rejected with
// code ERR_REX_TOKENIZER.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from 'tokenizers';
import { tokenContentBytes } from './detokenizer.js';
import { RexOmniError, invalidType, outOfRange } from './errors.js';

/** How many quantized coordinate bins Rex-Omni has ("<0>".."<999>"). */
export const COORDINATE_BINS = 1000;

/** The special tokens Rex-Omni's prompts and outputs use, by content. */
export const SPECIAL_TOKENS = {
  endOfText: '<|endoftext|>',
  imStart: '<|im_start|>',
  imEnd: '<|im_end|>',
  objectRefStart: '<|object_ref_start|>',
  objectRefEnd: '<|object_ref_end|>',
  boxStart: '<|box_start|>',
  boxEnd: '<|box_end|>',
  visionStart: '<|vision_start|>',
  visionEnd: '<|vision_end|>',
  imagePad: '<|image_pad|>',
} as const;

export type SpecialTokenName = keyof typeof SPECIAL_TOKENS;
export type SpecialTokenIds = Readonly<Record<SpecialTokenName, number>>;

export interface DecodeOptions {
  /** Drop special tokens (chat markers, box markers, …) from the text. Default false, as the reference does. */
  skipSpecial?: boolean;
}

export class RexTokenizer {
  /** The special tokens' ids. */
  readonly ids: SpecialTokenIds;
  /** coordinateIds[bin] is the id of "<bin>". */
  readonly coordinateIds: readonly number[];
  /** Where this tokenizer was read from. */
  readonly path: string;
  readonly #tokenizer: Tokenizer;
  readonly #binOfId: ReadonlyMap<number, number>;
  readonly #idsContaining = new Map<string, number[]>();
  readonly #asciiTexts = new Map<(text: string) => boolean, readonly (readonly [number, string])[]>();

  private constructor(tokenizer: Tokenizer, path: string, ids: SpecialTokenIds, coordinateIds: readonly number[]) {
    this.#tokenizer = tokenizer;
    this.path = path;
    this.ids = ids;
    this.coordinateIds = coordinateIds;
    this.#binOfId = new Map(coordinateIds.map((id, bin) => [id, bin]));
  }

  /** Loads `tokenizer.json` from a checkpoint folder. */
  static async fromDir(checkpointDir: string): Promise<RexTokenizer> {
    if (typeof checkpointDir !== 'string' || checkpointDir.length === 0) {
      throw invalidType('RexTokenizer.fromDir(checkpointDir)', 'a non-empty directory path', checkpointDir);
    }
    return RexTokenizer.fromFile(join(checkpointDir, 'tokenizer.json'));
  }

  /** Loads a tokenizer.json file and checks that it is a Rex-Omni tokenizer. */
  static async fromFile(path: string): Promise<RexTokenizer> {
    if (typeof path !== 'string' || path.length === 0) {
      throw invalidType('RexTokenizer.fromFile(path)', 'a non-empty file path', path);
    }
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new RexOmniError('ERR_REX_NOT_FOUND', `expected a readable tokenizer.json at ${path} but got: ${reason}`, {
        cause: error,
      });
    }
    let tokenizer: Tokenizer;
    try {
      tokenizer = Tokenizer.fromString(text);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new RexOmniError('ERR_REX_TOKENIZER', `expected a Hugging Face tokenizer.json at ${path} but got: ${reason}`, {
        cause: error,
      });
    }
    return new RexTokenizer(tokenizer, path, discoverSpecialIds(tokenizer, path), discoverCoordinateIds(tokenizer, path));
  }

  /** Token ids of `text`, special tokens recognised, nothing added (no BOS). */
  async encode(text: string): Promise<number[]> {
    if (typeof text !== 'string') throw invalidType('RexTokenizer.encode(text)', 'a string', text);
    const encoding = await this.#tokenizer.encode(text, null, { addSpecialTokens: false });
    return encoding.getIds();
  }

  /**
   * The ids `text` gets when it follows `prefix`: encodes prefix + text and
   * strips the prefix's own ids. Separators such as ", " tokenize differently
   * in context, so a grammar must use these sequences, never single ids.
   */
  async encodeInContext(prefix: string, text: string): Promise<number[]> {
    if (typeof prefix !== 'string') throw invalidType('RexTokenizer.encodeInContext(prefix)', 'a string', prefix);
    if (typeof text !== 'string') throw invalidType('RexTokenizer.encodeInContext(text)', 'a string', text);
    const [prefixIds, wholeIds] = await Promise.all([this.encode(prefix), this.encode(prefix + text)]);
    const prefixIntact = prefixIds.every((id, index) => wholeIds[index] === id);
    if (!prefixIntact) {
      const error = new RangeError(
        `RexTokenizer.encodeInContext: expected the tokens of ${JSON.stringify(prefix)} [${prefixIds.join(', ')}] ` +
          `to stay intact before ${JSON.stringify(text)} but got [${wholeIds.join(', ')}], which merges across the boundary`,
      );
      throw Object.assign(error, { code: 'ERR_OUT_OF_RANGE' });
    }
    return wholeIds.slice(prefixIds.length);
  }

  /** The text of `ids`; special tokens are kept unless `skipSpecial` is set. */
  async decode(ids: readonly number[], options: DecodeOptions = {}): Promise<string> {
    if (!Array.isArray(ids)) throw invalidType('RexTokenizer.decode(ids)', 'an array of token ids', ids);
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0) throw outOfRange('RexTokenizer.decode(ids)', 'non-negative integer token ids', id);
    }
    return this.#tokenizer.decode([...ids], options.skipSpecial ?? false);
  }

  /**
   * Ids of the ordinary (non-added) tokens whose text contains `needle`, an
   * ASCII string (byte-level BPE writes printable ASCII as itself). The
   * grammar uses it to keep characters out of free-text phrases.
   */
  idsWithTextContaining(needle: string): number[] {
    if (typeof needle !== 'string' || needle.length === 0 || /[^\x21-\x7e]/.test(needle))
      throw invalidType('RexTokenizer.idsWithTextContaining(needle)', 'a non-empty printable ASCII string', needle);
    let ids = this.#idsContaining.get(needle);
    if (!ids) {
      ids = [];
      for (const [content, id] of Object.entries(this.#tokenizer.getVocab(false))) if (content.includes(needle)) ids.push(id);
      ids.sort((a, b) => a - b);
      this.#idsContaining.set(needle, ids);
    }
    return [...ids];
  }

  /**
   * [id, text] of every ordinary (non-added) token whose decoded bytes are
   * ASCII and whose text passes `accept`, sorted by id. Cached per `accept`
   * function, so pass a long-lived one. The keypoint grammar's candidates.
   */
  asciiTokenTexts(accept: (text: string) => boolean): readonly (readonly [number, string])[] {
    if (typeof accept !== 'function') throw invalidType('RexTokenizer.asciiTokenTexts(accept)', 'a function', accept);
    let found = this.#asciiTexts.get(accept);
    if (!found) {
      const list: [number, string][] = [];
      for (const [content, id] of Object.entries(this.#tokenizer.getVocab(false))) {
        const bytes = tokenContentBytes(content);
        if (bytes.length === 0 || bytes.some((b) => b > 0x7f)) continue;
        const text = String.fromCharCode(...bytes);
        if (accept(text)) list.push([id, text]);
      }
      list.sort((a, b) => a[0] - b[0]);
      found = Object.freeze(list.map((e) => Object.freeze(e)));
      this.#asciiTexts.set(accept, found);
    }
    return found;
  }

  /** Whether `id` is one of the coordinate tokens "<0>".."<999>". */
  isCoordinateId(id: number): boolean {
    return this.#binOfId.has(id);
  }

  /** The bin (0..999) of a coordinate token id. */
  coordinateBin(id: number): number {
    const bin = this.#binOfId.get(id);
    if (bin === undefined) {
      throw outOfRange('RexTokenizer.coordinateBin(id)', 'the id of a coordinate token "<0>".."<999>"', id);
    }
    return bin;
  }

  /** The token id of coordinate bin `bin` (an integer 0..999). */
  coordinateId(bin: number): number {
    if (!Number.isInteger(bin) || bin < 0 || bin >= COORDINATE_BINS) {
      throw outOfRange('RexTokenizer.coordinateId(bin)', `an integer from 0 to ${COORDINATE_BINS - 1}`, bin);
    }
    return this.coordinateIds[bin]!;
  }

  /** The id of a token by its content, or undefined when the vocabulary lacks it. */
  tokenId(content: string): number | undefined {
    return this.#tokenizer.tokenToId(content) ?? undefined;
  }

  /** The content of a token id, or undefined when out of the vocabulary. */
  tokenContent(id: number): string | undefined {
    return this.#tokenizer.idToToken(id) ?? undefined;
  }
}

function discoverSpecialIds(tokenizer: Tokenizer, path: string): SpecialTokenIds {
  const ids: Partial<Record<SpecialTokenName, number>> = {};
  for (const [name, content] of Object.entries(SPECIAL_TOKENS) as [SpecialTokenName, string][]) {
    const id = tokenizer.tokenToId(content);
    if (id === null || id === undefined) {
      throw new RexOmniError(
        'ERR_REX_TOKENIZER',
        `tokenizer.json at ${path} lacks the special token "${content}"; expected a Rex-Omni (Qwen2.5-VL) tokenizer`,
      );
    }
    ids[name] = id;
  }
  return Object.freeze(ids as Record<SpecialTokenName, number>);
}

function discoverCoordinateIds(tokenizer: Tokenizer, path: string): readonly number[] {
  const coordinateIds: number[] = [];
  for (let bin = 0; bin < COORDINATE_BINS; bin++) {
    const id = tokenizer.tokenToId(`<${bin}>`);
    if (id === null || id === undefined) {
      throw new RexOmniError(
        'ERR_REX_TOKENIZER',
        `tokenizer.json at ${path} lacks the coordinate token "<${bin}>"; expected a Rex-Omni tokenizer with <0>…<${COORDINATE_BINS - 1}>`,
      );
    }
    coordinateIds.push(id);
  }
  return Object.freeze(coordinateIds);
}

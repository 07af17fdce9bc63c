// RexTokenizer against the tiny checkpoint's Rex-Omni-style tokenizer.json, and
// its rejection of tokenizers that lack coordinate or special tokens.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RexTokenizer } from '../lib/tokenizer.js';
import { plainQwenTokenizerPath, type TokenizerJson } from './fixtures/rex-tokenizer.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

const FIRST_COORDINATE_ID = 150643;

let checkpointDir: string;
let tokenizer: RexTokenizer;
let scratch: string;

beforeAll(async () => {
  checkpointDir = await ensureTinyCheckpoint();
  tokenizer = await RexTokenizer.fromDir(checkpointDir);
  scratch = await mkdtemp(join(tmpdir(), 'rex-tokenizer-'));
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('RexTokenizer on a Rex-Omni tokenizer', () => {
  it('finds <0>..<999> at ids 150643..151642', () => {
    expect(tokenizer.coordinateIds).toHaveLength(1000);
    tokenizer.coordinateIds.forEach((id, bin) => expect(id).toBe(FIRST_COORDINATE_ID + bin));
    expect(tokenizer.tokenContent(FIRST_COORDINATE_ID + 999)).toBe('<999>');
  });

  it('finds the special ids of the REXOMNI.md table', () => {
    expect(tokenizer.ids).toEqual({
      endOfText: 151643,
      imStart: 151644,
      imEnd: 151645,
      objectRefStart: 151646,
      objectRefEnd: 151647,
      boxStart: 151648,
      boxEnd: 151649,
      visionStart: 151652,
      visionEnd: 151653,
      imagePad: 151655,
    });
  });

  it('encodes ", <646>" as ",", "Ġ", "<646>"', async () => {
    expect(await tokenizer.encode(', <646>')).toEqual([11, 220, FIRST_COORDINATE_ID + 646]);
  });

  it('encodes a visual prompt "<12><34>" to two coordinate ids', async () => {
    expect(await tokenizer.encode('<12><34>')).toEqual([FIRST_COORDINATE_ID + 12, FIRST_COORDINATE_ID + 34]);
  });

  it('encodes text without adding a BOS or any other token', async () => {
    expect(await tokenizer.encode('')).toEqual([]);
    expect(await tokenizer.encode('<|im_start|>')).toEqual([151644]);
  });

  it('decodes what it encodes, keeping special tokens unless asked to skip them', async () => {
    const text = '<|object_ref_start|>cat<|object_ref_end|><|box_start|><0><5><998><999>, <12><34><|box_end|><|im_end|>';
    const ids = await tokenizer.encode(text);
    expect(ids.filter((id) => tokenizer.isCoordinateId(id)).map((id) => tokenizer.coordinateBin(id))).toEqual([
      0, 5, 998, 999, 12, 34,
    ]);
    expect(await tokenizer.decode(ids)).toBe(text);
    expect(await tokenizer.decode(ids, { skipSpecial: true })).toBe('cat<0><5><998><999>, <12><34>');
  });

  it('maps coordinate bins to ids and back', () => {
    expect(tokenizer.coordinateId(0)).toBe(FIRST_COORDINATE_ID);
    expect(tokenizer.coordinateId(999)).toBe(FIRST_COORDINATE_ID + 999);
    expect(tokenizer.coordinateBin(FIRST_COORDINATE_ID + 646)).toBe(646);
    expect(tokenizer.isCoordinateId(FIRST_COORDINATE_ID - 1)).toBe(false);
    expect(tokenizer.isCoordinateId(FIRST_COORDINATE_ID + 1000)).toBe(false);
    expect(() => tokenizer.coordinateId(1000)).toThrow(
      'RexTokenizer.coordinateId(bin): expected an integer from 0 to 999 but got 1000',
    );
    expect(() => tokenizer.coordinateId(1.5)).toThrow(RangeError);
    expect(() => tokenizer.coordinateBin(11)).toThrow(
      'RexTokenizer.coordinateBin(id): expected the id of a coordinate token "<0>".."<999>" but got 11',
    );
  });

  it('tokenizes separators in context', async () => {
    expect(await tokenizer.encodeInContext('<12>', ', <646>')).toEqual([11, 220, FIRST_COORDINATE_ID + 646]);
    expect(await tokenizer.encodeInContext('<|box_end|>', ', ')).toEqual(await tokenizer.encode(', '));
    await expect(tokenizer.encodeInContext('hel', 'lo')).rejects.toThrow(/merges across the boundary/);
  });

  it('rejects bad input with "expected … but got …"', async () => {
    await expect(tokenizer.encode(5 as unknown as string)).rejects.toThrow(
      'RexTokenizer.encode(text): expected a string but got 5',
    );
    await expect(tokenizer.decode([1, -2])).rejects.toThrow(
      'RexTokenizer.decode(ids): expected non-negative integer token ids but got -2',
    );
  });
});

describe('RexTokenizer rejects tokenizers that are not Rex-Omni ones', () => {
  async function writeVariant(name: string, edit: (json: TokenizerJson) => void): Promise<string> {
    const json = JSON.parse(await readFile(join(checkpointDir, 'tokenizer.json'), 'utf8')) as TokenizerJson;
    edit(json);
    const path = join(scratch, `${name}.json`);
    await writeFile(path, JSON.stringify(json));
    return path;
  }

  it('rejects the plain Qwen tokenizer, naming the first missing coordinate token', async () => {
    const path = plainQwenTokenizerPath();
    await expect(RexTokenizer.fromFile(path)).rejects.toMatchObject({
      code: 'ERR_REX_TOKENIZER',
      message: `tokenizer.json at ${path} lacks the coordinate token "<0>"; expected a Rex-Omni tokenizer with <0>…<999>`,
    });
  });

  it('rejects a tokenizer lacking a single coordinate token', async () => {
    const path = await writeVariant('no-17', (json) => {
      delete json.model.vocab['<17>'];
      json.added_tokens = json.added_tokens.filter((token) => token.content !== '<17>');
    });
    await expect(RexTokenizer.fromFile(path)).rejects.toMatchObject({
      code: 'ERR_REX_TOKENIZER',
      message: `tokenizer.json at ${path} lacks the coordinate token "<17>"; expected a Rex-Omni tokenizer with <0>…<999>`,
    });
  });

  it('rejects a tokenizer lacking a special token', async () => {
    const path = await writeVariant('no-box-end', (json) => {
      json.added_tokens = json.added_tokens.filter((token) => token.content !== '<|box_end|>');
    });
    await expect(RexTokenizer.fromFile(path)).rejects.toMatchObject({
      code: 'ERR_REX_TOKENIZER',
      message: `tokenizer.json at ${path} lacks the special token "<|box_end|>"; expected a Rex-Omni (Qwen2.5-VL) tokenizer`,
    });
  });

  it('rejects a missing file with ERR_REX_NOT_FOUND', async () => {
    await expect(RexTokenizer.fromDir(join(scratch, 'nowhere'))).rejects.toMatchObject({ code: 'ERR_REX_NOT_FOUND' });
  });
});

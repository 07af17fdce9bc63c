// The chat text and prompt ids around a task prompt, byte for byte.
import { beforeAll, describe, expect, it } from 'vitest';
import { buildChatText, buildPromptIds, expandImagePads, imagePadCount } from '../lib/chat.js';
import { RexTokenizer } from '../lib/tokenizer.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

const DETECT_CAT = 'Detect cat. Output the bounding box coordinates in [x0, y0, x1, y1] format.';

let tokenizer: RexTokenizer;

beforeAll(async () => {
  tokenizer = await RexTokenizer.fromDir(await ensureTinyCheckpoint());
});

describe('buildChatText', () => {
  it('wraps the task prompt exactly as the reference does', () => {
    expect(buildChatText(DETECT_CAT)).toBe(
      '<|im_start|>system\nYou are a helpful assistant<|im_end|>\n' +
        '<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>' +
        'Detect cat. Output the bounding box coordinates in [x0, y0, x1, y1] format.<|im_end|>\n' +
        '<|im_start|>assistant\n',
    );
  });

  it('rejects a non-string prompt', () => {
    expect(() => buildChatText(undefined as unknown as string)).toThrow(
      'buildChatText(taskPrompt): expected a string but got undefined',
    );
  });
});

describe('imagePadCount', () => {
  it('is one pad per 2x2 patch block', () => {
    expect(imagePadCount(4, 6)).toBe(6);
    expect(imagePadCount(2, 2)).toBe(1);
    expect(imagePadCount(98, 74)).toBe(1813);
    expect(imagePadCount(9, 6, 3)).toBe(6);
  });

  it('rejects grids that do not merge evenly', () => {
    expect(() => imagePadCount(5, 6)).toThrow('imagePadCount(gridH): expected a positive integer multiple of 2 but got 5');
    expect(() => imagePadCount(4, 0)).toThrow('imagePadCount(gridW): expected a positive integer multiple of 2 but got 0');
  });
});

describe('buildPromptIds', () => {
  const PAD = 151655;
  const BEFORE_IMAGE = [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 151645, 198, 151644, 872, 198, 151652];
  const AFTER_PROMPT = [151645, 198, 151644, 77091, 198];

  it('expands the single image pad to the requested count', async () => {
    const promptIds = await tokenizer.encode(DETECT_CAT);
    const ids = await buildPromptIds(tokenizer, DETECT_CAT, 6);
    expect(ids).toEqual([...BEFORE_IMAGE, ...Array<number>(6).fill(PAD), 151653, ...promptIds, ...AFTER_PROMPT]);
  });

  it('matches tokenizing the expanded text', async () => {
    const expandedText = buildChatText('Point to person.').replace('<|image_pad|>', '<|image_pad|>'.repeat(12));
    expect(await buildPromptIds(tokenizer, 'Point to person.', 12)).toEqual(await tokenizer.encode(expandedText));
  });

  it('rejects a pad count that is not a positive integer', async () => {
    await expect(buildPromptIds(tokenizer, DETECT_CAT, 0)).rejects.toThrow(
      'buildPromptIds(imagePadCount): expected a positive integer but got 0',
    );
  });

  it('expands a one-pad prompt afterwards to what building with the count gives (expandImagePads)', async () => {
    const one = await buildPromptIds(tokenizer, DETECT_CAT, 1);
    const expanded = expandImagePads(one, PAD, 9);
    expect(expanded).toEqual(await buildPromptIds(tokenizer, DETECT_CAT, 9));
    expect(one.filter((id) => id === PAD)).toHaveLength(1);  // the input is left as it was
    expect(() => expandImagePads([1, 2, 3], PAD, 4)).toThrow('expandImagePads: expected ids with an image pad');
    expect(() => expandImagePads(one, PAD, 0)).toThrow('but got 0');
  });

  it('rejects a task prompt that smuggles in another image placeholder', async () => {
    await expect(buildPromptIds(tokenizer, 'Point to <|image_pad|>.', 4)).rejects.toThrow(
      'buildPromptIds(taskPrompt): expected a chat text with exactly one <|image_pad|> but got 2',
    );
  });
});

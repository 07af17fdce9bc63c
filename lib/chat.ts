// The chat text around a Rex-Omni task prompt, and its token ids with the image
// placeholder expanded, exactly as the reference wrapper builds them
// (REXOMNI.md "Prompt"). The system prompt has no final period on purpose.
import { invalidType, outOfRange } from './errors.js';
import type { RexTokenizer } from './tokenizer.js';

export const SYSTEM_PROMPT = 'You are a helpful assistant';

/** The chat text with one `<|image_pad|>` placeholder, before expansion. */
export function buildChatText(taskPrompt: string): string {
  if (typeof taskPrompt !== 'string') throw invalidType('buildChatText(taskPrompt)', 'a string', taskPrompt);
  return (
    `<|im_start|>system\n${SYSTEM_PROMPT}<|im_end|>\n` +
    `<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>${taskPrompt}<|im_end|>\n` +
    `<|im_start|>assistant\n`
  );
}

/** How many `<|image_pad|>` tokens an image of gridH × gridW patches takes: one per merge × merge block. */
export function imagePadCount(gridH: number, gridW: number, merge = 2): number {
  if (!Number.isInteger(merge) || merge < 1) throw outOfRange('imagePadCount(merge)', 'a positive integer', merge);
  for (const [what, value] of [
    ['imagePadCount(gridH)', gridH],
    ['imagePadCount(gridW)', gridW],
  ] as const) {
    if (!Number.isInteger(value) || value < merge || value % merge !== 0) {
      throw outOfRange(what, `a positive integer multiple of ${merge}`, value);
    }
  }
  return (gridH * gridW) / (merge * merge);
}

/** The prompt's token ids, with the single image placeholder expanded to `imagePads` copies. */
export async function buildPromptIds(
  tokenizer: Pick<RexTokenizer, 'encode' | 'ids'>,
  taskPrompt: string,
  imagePads: number,
): Promise<number[]> {
  if (!Number.isInteger(imagePads) || imagePads < 1) {
    throw outOfRange('buildPromptIds(imagePadCount)', 'a positive integer', imagePads);
  }
  const ids = await tokenizer.encode(buildChatText(taskPrompt));
  const imagePad = tokenizer.ids.imagePad;
  const placeholders = ids.filter((id) => id === imagePad).length;
  if (placeholders !== 1) {
    const error = new RangeError(
      `buildPromptIds(taskPrompt): expected a chat text with exactly one <|image_pad|> but got ${placeholders} ` +
        '(the task prompt must not contain <|image_pad|>)',
    );
    throw Object.assign(error, { code: 'ERR_OUT_OF_RANGE' });
  }
  return expandImagePads(ids, imagePad, imagePads);
}

/** `ids` (with one `imagePad` id, as buildPromptIds(..., 1) gives) with that id repeated `imagePads` times; a new array. */
export function expandImagePads(ids: readonly number[], imagePad: number, imagePads: number): number[] {
  const at = ids.indexOf(imagePad);
  if (at < 0 || !Number.isInteger(imagePads) || imagePads < 1) {
    throw outOfRange('expandImagePads', 'ids with an image pad and a positive pad count', at < 0 ? 'no image pad' : imagePads);
  }
  return [...ids.slice(0, at), ...new Array<number>(imagePads).fill(imagePad), ...ids.slice(at + 1)];
}

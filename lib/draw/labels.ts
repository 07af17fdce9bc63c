// Where a label goes and how big it is. A label is a filled box in the
// phrase's colour with black or white text. It is placed next to what it
// names and then moved (never cut) so it lies wholly inside the image; text
// too long for the image is shortened with an ellipsis.
//
// Sizes come from a monospace font (DejaVu Sans Mono, whose advance is 0.6 em;
// wide East Asian characters count double), so no font measuring is needed.
import { displayWidth } from '../text-width.js';

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface PlacedLabel extends Rect {
  text: string;
  /** The text's baseline origin. */
  textX: number;
  textY: number;
}

export interface ImageBounds {
  width: number;
  height: number;
}

const ADVANCE_EM = 0.6;

/** `text`, shortened with "…" to at most `maxCells` cells. */
function fitText(text: string, maxCells: number): string {
  if (displayWidth(text) <= maxCells) return text;
  let out = '';
  for (const char of text) {
    if (displayWidth(out + char) > maxCells - 1) break;
    out += char;
  }
  return `${out}…`;
}

export interface LabelStyle {
  fontSize: number;
  padding: number;
}

/**
 * A label for `text` whose preferred top-left corner is `at`, moved inside `image`.
 * `fallback` is a second top-left corner tried when the first would leave the image.
 */
export function placeLabel(
  text: string,
  at: { x: number; y: number },
  image: ImageBounds,
  style: LabelStyle,
  fallback?: { x: number; y: number },
): PlacedLabel {
  const { fontSize, padding } = style;
  const cellWidth = fontSize * ADVANCE_EM;
  const maxCells = Math.max(1, Math.floor((image.width - 2 * padding) / cellWidth));
  const shown = fitText(text, maxCells);
  const width = Math.min(image.width, displayWidth(shown) * cellWidth + 2 * padding);
  const height = Math.min(image.height, fontSize * 1.25 + 2 * padding);
  const fits = (p: { x: number; y: number }) => p.x >= 0 && p.y >= 0 && p.x + width <= image.width && p.y + height <= image.height;
  const corner = !fits(at) && fallback && fits(fallback) ? fallback : at;
  const x = clamp(corner.x, 0, image.width - width);
  const y = clamp(corner.y, 0, image.height - height);
  return { text: shown, x, y, width, height, textX: x + padding, textY: y + padding + fontSize * 0.95 };
}

/** The label's size for `text` before placement (for laying labels out around a shape). */
export function labelSize(text: string, style: LabelStyle): { width: number; height: number } {
  return { width: displayWidth(text) * style.fontSize * ADVANCE_EM + 2 * style.padding, height: style.fontSize * 1.25 + 2 * style.padding };
}

function clamp(value: number, low: number, high: number): number {
  return Math.max(low, Math.min(Math.max(low, high), value));
}

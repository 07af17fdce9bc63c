// One stable colour per phrase: the phrase's FNV-1a hash picks a hue and one
// of three lightness levels (so phrases of near hues still differ), at a fixed
// high saturation so every colour is vivid. Text drawn on a
// colour is black or white, whichever contrasts more (WCAG relative luminance).
import { hashName } from '../hash-name.js';

const LIGHTNESS = [0.42, 0.55, 0.68] as const;

export type Rgb = readonly [r: number, g: number, b: number];

/** The colour of `phrase`: the same phrase always gets the same colour. */
export function phraseColour(phrase: string): Rgb {
  const hash = hashName(phrase);
  return hslToRgb(hash % 360, 0.85, LIGHTNESS[(hash >>> 16) % LIGHTNESS.length]!);
}

/** "#rrggbb". */
export function toHex([r, g, b]: Rgb): string {
  return `#${[r, g, b].map((v) => v.toString(16).padStart(2, '0')).join('')}`;
}

/** Black or white, whichever reads better on `background`. */
export function textColourOn(background: Rgb): Rgb {
  const luminance = relativeLuminance(background);
  // Contrast against white is 1.05 / (L + 0.05), against black (L + 0.05) / 0.05.
  return 1.05 / (luminance + 0.05) > (luminance + 0.05) / 0.05 ? [255, 255, 255] : [0, 0, 0];
}

function relativeLuminance(rgb: Rgb): number {
  const [r, g, b] = rgb.map((v) => {
    const c = v / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  }) as [number, number, number];
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

function hslToRgb(hue: number, saturation: number, lightness: number): Rgb {
  const chroma = (1 - Math.abs(2 * lightness - 1)) * saturation;
  const sector = hue / 60;
  const x = chroma * (1 - Math.abs((sector % 2) - 1));
  const [r, g, b] =
    sector < 1 ? [chroma, x, 0] : sector < 2 ? [x, chroma, 0] : sector < 3 ? [0, chroma, x] : sector < 4 ? [0, x, chroma] : sector < 5 ? [x, 0, chroma] : [chroma, 0, x];
  const m = lightness - chroma / 2;
  return [r, g, b].map((v) => Math.round((v + m) * 255)) as unknown as Rgb;
}

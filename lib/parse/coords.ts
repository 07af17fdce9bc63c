// Bins to pixels, as the reference computes it: (bin / 999) · W for x and
// (bin / 999) · H for y, W and H being the ORIGINAL image's size.
import type { XY, XYXY } from '../predictions.js';
import type { ImageSize } from '../tasks/spec.js';

export function binToPixel(bin: number, size: number): number {
  return (bin / 999) * size;
}

export function pointFromBins(bins: XY, image: ImageSize): XY {
  return [binToPixel(bins[0], image.width), binToPixel(bins[1], image.height)];
}

export function boxFromBins(bins: XYXY, image: ImageSize): XYXY {
  return [
    binToPixel(bins[0], image.width),
    binToPixel(bins[1], image.height),
    binToPixel(bins[2], image.width),
    binToPixel(bins[3], image.height),
  ];
}

/** The `<digits>` coordinates in a string, in order (the reference's `<(\d+)>`). */
export function binsInText(text: string): number[] {
  return Array.from(text.matchAll(/<(\d+)>/g), (m) => Number.parseInt(m[1], 10));
}

// Draws predictions onto a copy of their image with sharp: the image is
// turned upright by its EXIF orientation (the picture the model saw and the
// coordinates refer to), the SVG overlay is composited on top, and the result
// is written in the format the output file's extension names.
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import sharp from 'sharp';

import type { Prediction } from '../predictions.js';
import { overlaySvg } from './overlay.js';

/** Writes `image` with `predictions` drawn on it to `outPath`; returns the drawn size. */
export async function drawPredictions(
  image: string | Buffer,
  predictions: readonly Prediction[],
  outPath: string,
): Promise<{ width: number; height: number }> {
  const metadata = await sharp(image).metadata();
  const { width, height } = metadata.autoOrient;
  await mkdir(dirname(outPath), { recursive: true });
  await sharp(image)
    .rotate()
    .composite([{ input: Buffer.from(overlaySvg(predictions, { width, height })), top: 0, left: 0 }])
    .toFormat(formatOf(outPath), { quality: 90 })
    .toFile(outPath);
  return { width, height };
}

type OutputFormat = 'jpeg' | 'png' | 'webp' | 'avif' | 'tiff' | 'gif';

function formatOf(path: string): OutputFormat {
  const extension = path.slice(path.lastIndexOf('.') + 1).toLowerCase();
  if (extension === 'jpg' || extension === 'jpeg') return 'jpeg';
  if (extension === 'tif' || extension === 'tiff') return 'tiff';
  if (extension === 'webp' || extension === 'avif' || extension === 'gif') return extension;
  return 'png';
}

// loadImage: any supported input → 8-bit RGB as the reference decodes it
// (Pillow via qwen_vl_utils): embedded ICC profiles ignored (Pillow does not
// convert), GIF's first frame, alpha pasted onto white with Pillow's rounding,
// plus EXIF orientation by default (an option; the reference never applies it).
import { readFile } from 'node:fs/promises';
import sharp, { type Metadata, type OutputInfo, type Sharp } from 'sharp';
import { RexOmniError, invalidType, outOfRange } from '../errors.js';
import { corruptImage, emptyImage, imageTooLarge, notAnImage } from './errors.js';
import { toRgb } from './to-rgb.js';
import { DEFAULT_MAX_INPUT_PIXELS, type DecodedImage, type ImageInput, type LoadImageOptions, type RawImage } from './types.js';

const INPUT = 'a file path, image bytes (Buffer / Uint8Array), raw pixels { data, width, height, channels? } or a sharp instance';

function isSharp(value: unknown): value is Sharp {
  if (value instanceof sharp) return true;
  const v = value as Partial<Sharp> | null;
  return typeof v === 'object' && v !== null && typeof v.clone === 'function' && typeof v.metadata === 'function' && typeof v.toBuffer === 'function';
}

function checkOptions(options: LoadImageOptions): Required<LoadImageOptions> {
  if (typeof options !== 'object' || options === null) throw invalidType('loadImage(options)', 'an object', options);
  const { applyExif = true, maxInputPixels = DEFAULT_MAX_INPUT_PIXELS } = options;
  if (typeof applyExif !== 'boolean') throw invalidType('loadImage(options.applyExif)', 'a boolean', applyExif);
  if (typeof maxInputPixels !== 'number') throw invalidType('loadImage(options.maxInputPixels)', 'a positive integer', maxInputPixels);
  if (!Number.isInteger(maxInputPixels) || maxInputPixels < 1) {
    throw outOfRange('loadImage(options.maxInputPixels)', 'a positive integer', maxInputPixels);
  }
  return { applyExif, maxInputPixels };
}

function checkSize(width: number, height: number, limit: number): void {
  if (!(width >= 1 && height >= 1)) throw emptyImage(width, height);
  if (width * height > limit) throw imageTooLarge(width, height, limit);
}

/** Raw pixels: checked and converted in JavaScript (EXIF does not apply). */
function loadRaw(raw: RawImage, limit: number): DecodedImage {
  const { data, width, height, channels = 3 } = raw;
  if (!(data instanceof Uint8Array)) throw invalidType('loadImage(input.data)', 'a Buffer or Uint8Array', data);
  for (const [key, value] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (typeof value !== 'number') throw invalidType(`loadImage(input.${key})`, 'a non-negative integer', value);
    if (!Number.isInteger(value) || value < 0) throw outOfRange(`loadImage(input.${key})`, 'a non-negative integer', value);
  }
  if (channels !== 1 && channels !== 2 && channels !== 3 && channels !== 4) {
    throw outOfRange('loadImage(input.channels)', '1, 2, 3 or 4', channels);
  }
  checkSize(width, height, limit);
  const expected = width * height * channels;
  if (data.length !== expected) {
    throw outOfRange('loadImage(input.data)', `${expected} bytes (${width}x${height}x${channels})`, `${data.length} bytes`);
  }
  return {
    rgb: toRgb(data, width * height, channels),
    width,
    height,
    source: { format: 'raw', orientation: null, orientationApplied: false, hasAlpha: channels === 2 || channels === 4 },
  };
}

function formatName(meta: Metadata): string {
  if (meta.format === 'heif' && meta.compression === 'av1') return 'avif';
  return meta.format ?? 'unknown';
}

const SHARP_OPTIONS = { failOn: 'error', ignoreIcc: true, limitInputPixels: false, pages: 1, page: 0 } as const;

async function decode(image: Sharp, bytes: Uint8Array | null, options: Required<LoadImageOptions>): Promise<DecodedImage> {
  let meta: Metadata;
  try {
    meta = await image.metadata();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (bytes !== null && /unsupported image format|buffer is empty/i.test(message)) throw notAnImage(bytes, error);
    throw corruptImage('image', message, error);
  }
  const format = formatName(meta);
  checkSize(meta.width ?? 0, meta.height ?? 0, options.maxInputPixels);
  const orientation = meta.orientation ?? null;
  const pipeline = options.applyExif ? image.autoOrient() : image;
  let data: Buffer;
  let info: OutputInfo;
  try {
    ({ data, info } = await pipeline.toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true }));
  } catch (error) {
    throw corruptImage(format, error instanceof Error ? error.message : String(error), error);
  }
  checkSize(info.width, info.height, options.maxInputPixels);
  const pixels = info.width * info.height;
  return {
    rgb: info.channels === 3 ? data : toRgb(data, pixels, info.channels),
    width: info.width,
    height: info.height,
    source: {
      format,
      orientation,
      orientationApplied: options.applyExif && orientation !== null && orientation !== 1,
      hasAlpha: info.channels === 2 || info.channels === 4,
    },
  };
}

/** Decodes an image to interleaved 8-bit RGB (see DecodedImage). */
export async function loadImage(input: ImageInput, options: LoadImageOptions = {}): Promise<DecodedImage> {
  const opts = checkOptions(options);
  if (typeof input === 'string') {
    if (input.length === 0) throw invalidType('loadImage(input)', INPUT, input);
    let bytes: Buffer;
    try {
      bytes = await readFile(input);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new RexOmniError('ERR_REX_NOT_FOUND', `expected a readable image file at ${input} but got: ${reason}`, { cause: error });
    }
    return decode(sharp(bytes, SHARP_OPTIONS), bytes, opts);
  }
  if (input instanceof ArrayBuffer) input = new Uint8Array(input);
  if (input instanceof Uint8Array) {
    if (input.length === 0) throw notAnImage(input);
    return decode(sharp(input, SHARP_OPTIONS), input, opts);
  }
  if (isSharp(input)) return decode(input.clone(), null, opts);
  if (typeof input === 'object' && input !== null && 'data' in input && 'width' in input && 'height' in input) {
    return loadRaw(input, opts.maxInputPixels);
  }
  throw invalidType('loadImage(input)', INPUT, input);
}

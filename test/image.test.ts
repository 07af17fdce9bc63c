// loadImage: decoding matches Pillow's (the golden source_rgb_sha256 hashes),
// every input form, EXIF, alpha onto white, and the errors for bad images.
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { blendOntoWhite, loadImage, toRgb } from '../lib/image/index.js';
import { repoRoot } from './fixtures/repo-root.js';

const ROOT = repoRoot();
const FIXTURES = join(ROOT, 'test', 'fixtures', 'images');
const GOLDEN = join(ROOT, 'test', 'fixtures', 'golden', 'preprocess');
const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

interface GoldenCase {
  case: string;
  image: string;
  exif_transpose: boolean;
  source_size: [number, number];
  source_rgb_sha256: string;
  exif_orientation: number | null;
  alpha_composited: boolean;
}

const cases: GoldenCase[] = readdirSync(GOLDEN)
  .filter((f) => f.endsWith('.json'))
  .map((f) => JSON.parse(readFileSync(join(GOLDEN, f), 'utf8')) as GoldenCase)
  .filter((g) => g.image.startsWith('shared:') || g.image.startsWith('fixture:'));

function pathOf(image: string): string {
  // "shared:" names the photos that were once kept outside the repository; they now live in the fixtures too.
  return join(FIXTURES, image.slice(image.indexOf(':') + 1));
}

function expectCode(promise: Promise<unknown>, type: typeof TypeError | typeof RangeError, code: string, message: string) {
  return expect(promise).rejects.toSatisfy((error: unknown) => {
    expect(error).toBeInstanceOf(type);
    expect((error as Error).message).toBe(message);
    expect((error as { code?: string }).code).toBe(code);
    return true;
  });
}

describe('loadImage decodes exactly as Pillow does (golden source_rgb_sha256)', () => {
  it('has the golden cases it expects', () => {
    expect(cases.map((c) => c.case).sort()).toEqual([
      'fixture_exif_rot6_raw',
      'fixture_exif_rot6_transposed',
      'fixture_rgba',
      'fixture_rgba_transposed',
      'shared_animal_png',
      'shared_boxes_jpg',
      'shared_boys_jpg',
      'shared_cafe_jpg',
      'shared_cup_png',
      'shared_gui_png',
      'shared_layout_jpg',
      'shared_ocr_png',
      'shared_person_png',
      'shared_pigeons_jpeg',
    ]);
  });

  for (const g of cases) {
    it(`${g.case} (${g.image}, applyExif ${g.exif_transpose})`, async () => {
      const image = await loadImage(pathOf(g.image), { applyExif: g.exif_transpose });
      expect([image.width, image.height]).toEqual(g.source_size);
      expect(image.rgb.length).toBe(image.width * image.height * 3);
      expect(image.source.orientation).toBe(g.exif_orientation);
      expect(image.source.hasAlpha).toBe(g.alpha_composited);
      expect(sha256(image.rgb)).toBe(g.source_rgb_sha256);
    });
  }

  it('pigeons.jpeg only matches with its embedded ICC profile ignored (Pillow does not convert)', async () => {
    const converted = await sharp(join(FIXTURES, 'pigeons.jpeg')).raw().toBuffer();
    const golden = cases.find((c) => c.case === 'shared_pigeons_jpeg')!;
    expect(sha256(converted)).not.toBe(golden.source_rgb_sha256);
  });

  it("rgba.png only matches with Pillow's paste rounding, not sharp's flatten", async () => {
    const flattened = await sharp(join(FIXTURES, 'rgba.png')).flatten({ background: '#ffffff' }).raw().toBuffer();
    const golden = cases.find((c) => c.case === 'fixture_rgba')!;
    expect(sha256(flattened)).not.toBe(golden.source_rgb_sha256);
  });
});

describe('loadImage inputs', () => {
  const cafe = join(FIXTURES, 'cafe.jpg');
  const cafeHash = cases.find((c) => c.case === 'shared_cafe_jpg')!.source_rgb_sha256;

  it('takes a path, a Buffer, a Uint8Array, an ArrayBuffer and a sharp instance alike', async () => {
    const bytes = readFileSync(cafe);
    const u8 = new Uint8Array(bytes);
    const instance = sharp(bytes, { ignoreIcc: true });
    for (const input of [cafe, bytes, u8, u8.buffer, instance]) {
      const image = await loadImage(input);
      expect(sha256(image.rgb)).toBe(cafeHash);
      expect(image.source.format).toBe('jpeg');
    }
    // The instance was cloned, not consumed.
    expect((await instance.metadata()).width).toBe(1440);
  });

  it('applies EXIF orientation by default and reports it', async () => {
    const path = join(FIXTURES, 'exif_rot6.jpg');
    const rotated = await loadImage(path);
    expect([rotated.width, rotated.height]).toEqual([96, 160]);
    expect(rotated.source).toEqual({ format: 'jpeg', orientation: 6, orientationApplied: true, hasAlpha: false });
    const stored = await loadImage(path, { applyExif: false });
    expect([stored.width, stored.height]).toEqual([160, 96]);
    expect(stored.source.orientationApplied).toBe(false);
  });

  it('takes raw RGB, RGBA, gray and gray+alpha pixels', async () => {
    const rgb = Uint8Array.from([1, 2, 3, 4, 5, 6]);
    const a = await loadImage({ data: rgb, width: 2, height: 1 });
    expect([...a.rgb]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(a.source).toEqual({ format: 'raw', orientation: null, orientationApplied: false, hasAlpha: false });
    rgb[0] = 99; // the result is a copy
    expect(a.rgb[0]).toBe(1);

    const rgba = await loadImage({ data: Uint8Array.from([10, 20, 30, 0, 10, 20, 30, 255, 100, 0, 200, 128]), width: 3, height: 1, channels: 4 });
    expect([...rgba.rgb]).toEqual([255, 255, 255, 10, 20, 30, 177, 127, 227]);
    expect(rgba.source.hasAlpha).toBe(true);

    const gray = await loadImage({ data: Uint8Array.from([7, 200]), width: 1, height: 2, channels: 1 });
    expect([...gray.rgb]).toEqual([7, 7, 7, 200, 200, 200]);
    const grayAlpha = await loadImage({ data: Uint8Array.from([0, 128]), width: 1, height: 1, channels: 2 });
    expect([...grayAlpha.rgb]).toEqual([127, 127, 127]);
  });

  it('composites like Pillow: DIV255(255·(255−a) + c·a)', () => {
    expect(blendOntoWhite(0, 128)).toBe(127);
    expect(blendOntoWhite(100, 128)).toBe(177);
    for (let c = 0; c < 256; c++) {
      expect(blendOntoWhite(c, 255)).toBe(c);
      expect(blendOntoWhite(c, 0)).toBe(255);
      for (let a = 0; a < 256; a += 17) expect(blendOntoWhite(c, a)).toBe(Math.round((c * a + 255 * (255 - a)) / 255));
    }
    expect([...toRgb(Uint8Array.from([1, 2, 3]), 1, 3)]).toEqual([1, 2, 3]);
  });

  it('decodes PNG, lossless WebP, TIFF, AVIF and the first frame of an animated GIF', async () => {
    const raw = { width: 6, height: 4, channels: 3 as const };
    const data = Buffer.from(Array.from({ length: 72 }, (_, i) => (i * 37) % 256));
    const source = sharp(data, { raw });
    const expected = sha256(data);
    for (const [format, bytes] of [
      ['png', await source.clone().png().toBuffer()],
      ['webp', await source.clone().webp({ lossless: true }).toBuffer()],
      ['tiff', await source.clone().tiff({ compression: 'lzw' }).toBuffer()],
    ] as const) {
      const image = await loadImage(bytes);
      expect(image.source.format).toBe(format);
      expect(sha256(image.rgb)).toBe(expected);
    }
    const avif = await loadImage(await source.clone().avif({ lossless: true }).toBuffer());
    expect([avif.source.format, avif.width, avif.height, avif.rgb.length]).toEqual(['avif', 6, 4, 72]);

    const red = await sharp({ create: { width: 8, height: 6, channels: 3, background: '#ff0000' } }).png().toBuffer();
    const blue = await sharp({ create: { width: 8, height: 6, channels: 3, background: '#0000ff' } }).png().toBuffer();
    const gif = await sharp([red, blue], { join: { animated: true } }).gif().toBuffer();
    const first = await loadImage(gif);
    expect([first.source.format, first.width, first.height]).toEqual(['gif', 8, 6]);
    expect([...first.rgb.subarray(0, 3)]).toEqual([255, 0, 0]);
    expect([...first.rgb.subarray(-3)]).toEqual([255, 0, 0]);
  });
});

describe('loadImage errors', () => {
  it('rejects bytes that are not an image', async () => {
    await expectCode(
      loadImage(Buffer.from('hello world, no image here')),
      TypeError,
      'ERR_REX_IMAGE_FORMAT',
      'loadImage(input): expected the bytes of a JPEG, PNG, WebP, AVIF, TIFF or GIF image but got 26 bytes in no format sharp can decode (starting 68 65 6c 6c 6f 20 77 6f)',
    );
    await expectCode(
      loadImage(new Uint8Array(0)),
      TypeError,
      'ERR_REX_IMAGE_FORMAT',
      'loadImage(input): expected the bytes of a JPEG, PNG, WebP, AVIF, TIFF or GIF image but got 0 bytes',
    );
  });

  it('rejects a truncated file', async () => {
    const jpeg = readFileSync(join(FIXTURES, 'cafe.jpg'));
    await expectCode(
      loadImage(jpeg.subarray(0, jpeg.length >> 1)),
      TypeError,
      'ERR_REX_IMAGE_CORRUPT',
      'loadImage(input): expected a complete jpeg image but got a truncated or corrupt one (VipsJpeg: premature end of JPEG image)',
    );
    const png = readFileSync(join(FIXTURES, 'cup.png'));
    await expectCode(
      loadImage(png.subarray(0, png.length >> 1)),
      TypeError,
      'ERR_REX_IMAGE_CORRUPT',
      'loadImage(input): expected a complete png image but got a truncated or corrupt one (vipspng: libpng read error)',
    );
  });

  it('rejects a zero-sized image', async () => {
    await expectCode(
      loadImage({ data: new Uint8Array(0), width: 0, height: 5 }),
      RangeError,
      'ERR_REX_IMAGE_EMPTY',
      'loadImage(input): expected an image of at least 1x1 pixels but got 0x5',
    );
  });

  it('rejects an image over the pixel limit before decoding it', async () => {
    await expectCode(
      loadImage(join(FIXTURES, 'cafe.jpg'), { maxInputPixels: 1_000_000 }),
      RangeError,
      'ERR_REX_IMAGE_TOO_LARGE',
      'loadImage(input): expected at most 1000000 pixels (maxInputPixels) but got 1440x810 = 1166400',
    );
    await expectCode(
      loadImage({ data: new Uint8Array(12), width: 2, height: 2 }, { maxInputPixels: 3 }),
      RangeError,
      'ERR_REX_IMAGE_TOO_LARGE',
      'loadImage(input): expected at most 3 pixels (maxInputPixels) but got 2x2 = 4',
    );
  });

  it('rejects bad raw pixels, inputs and options', async () => {
    await expectCode(
      loadImage({ data: new Uint8Array(5), width: 2, height: 1 }),
      RangeError,
      'ERR_OUT_OF_RANGE',
      'loadImage(input.data): expected 6 bytes (2x1x3) but got "5 bytes"',
    );
    await expectCode(
      loadImage({ data: new Uint8Array(6), width: 2, height: 1, channels: 5 as 3 }),
      RangeError,
      'ERR_OUT_OF_RANGE',
      'loadImage(input.channels): expected 1, 2, 3 or 4 but got 5',
    );
    await expectCode(
      loadImage({ data: [1, 2, 3] as unknown as Uint8Array, width: 1, height: 1 }),
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      'loadImage(input.data): expected a Buffer or Uint8Array but got an array of length 3',
    );
    await expectCode(
      loadImage(42 as unknown as string),
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      'loadImage(input): expected a file path, image bytes (Buffer / Uint8Array), raw pixels { data, width, height, channels? } or a sharp instance but got 42',
    );
    await expectCode(
      loadImage(Buffer.alloc(1), { maxInputPixels: 0 }),
      RangeError,
      'ERR_OUT_OF_RANGE',
      'loadImage(options.maxInputPixels): expected a positive integer but got 0',
    );
    await expectCode(
      loadImage(Buffer.alloc(1), { applyExif: 'yes' as unknown as boolean }),
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      'loadImage(options.applyExif): expected a boolean but got "yes"',
    );
  });

  it('rejects a missing file with ERR_REX_NOT_FOUND', async () => {
    await expect(loadImage('/nonexistent/x.png')).rejects.toMatchObject({ code: 'ERR_REX_NOT_FOUND', name: 'RexOmniError' });
  });
});

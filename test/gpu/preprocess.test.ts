// GPU machine only (`npm run test:gpu`): the CUDA preprocessing (resize +
// normalize + patchify) byte for byte against the CPU path, on the image of
// every golden preprocess case (test/fixtures/golden/preprocess). The CPU
// result is first checked against the golden hashes, so the comparison is
// against the reference, not against whatever the CPU path does.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadAddon } from '../../lib/native.js';
import type { NativePreprocessed } from '../../lib/addon-types.js';
import { preprocessCases } from '../fixtures/golden-cases.js';
import { acquireGpuLock, goldenCaseImage, log } from '../fixtures/gpu-harness.js';

// Same test as vitest.config.ts's: whenever this folder is included, these run (never a silent skip).
const GPU = Boolean(process.env.REX_OMNI_GPU_TESTS);

const bytesOf = (a: Float32Array | Uint8Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const sha256 = (a: Float32Array | Uint8Array): string => createHash('sha256').update(bytesOf(a)).digest('hex');

function firstDifference(a: Buffer, b: Buffer): string {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; ++i) if (a[i] !== b[i]) return `first differing byte ${i}: ${a[i]} vs ${b[i]}`;
  return a.length === b.length ? 'identical' : `lengths ${a.length} vs ${b.length}`;
}

describe.skipIf(!GPU)('CUDA preprocessing vs CPU, byte for byte', () => {
  const cases = GPU ? preprocessCases() : [];
  let release: (() => void) | undefined;

  beforeAll(async () => {
    release = await acquireGpuLock('preprocess');
  }, 90 * 60_000);
  afterAll(() => release?.());

  it('has golden preprocess cases, the CUDA addon, and an option it reads', async () => {
    expect(cases.length).toBeGreaterThan(0);
    const { addon, info, path } = loadAddon();
    expect(info.backend, `the loaded addon ${path}`).toBe('cuda');
    // An unknown backend is rejected: the option is read, so { backend: 'cuda' } below is not silently ignored.
    const image = { data: new Uint8Array(56 * 56 * 3).fill(128), width: 56, height: 56 };
    // The binding checks the option synchronously; wrapping makes a throw and a rejection alike.
    await expect((async () => addon.preprocessImage(image, { backend: 'no-such-backend' as 'cuda' }))()).rejects.toThrow(
      'preprocessImage options.backend: expected "cpu" or "cuda" but got "no-such-backend"',
    );
  });

  for (const c of cases) {
    it(`${c.case}: resizedRgb and pixelValues identical`, async () => {
      const { addon } = loadAddon();
      const image = { ...(await goldenCaseImage(c.image, c.exif_transpose)), minPixels: c.min_pixels, maxPixels: c.max_pixels };

      const cpu: NativePreprocessed = await addon.preprocessImage(image);
      // The CPU path is the reference's (golden hashes).
      expect([cpu.resizedWidth, cpu.resizedHeight]).toEqual(c.resized_size);
      expect(sha256(cpu.resizedRgb)).toBe(c.resized_rgb_sha256);
      expect(sha256(cpu.pixelValues)).toBe(c.pixel_values.sha256_f32le);

      const t0 = performance.now();
      const gpu: NativePreprocessed = await addon.preprocessImage(image, { backend: 'cuda' });
      const ms = performance.now() - t0;
      expect([gpu.resizedWidth, gpu.resizedHeight, gpu.gridT, gpu.gridH, gpu.gridW]).toEqual([
        cpu.resizedWidth,
        cpu.resizedHeight,
        cpu.gridT,
        cpu.gridH,
        cpu.gridW,
      ]);
      const rgbCmp = Buffer.compare(bytesOf(gpu.resizedRgb), bytesOf(cpu.resizedRgb));
      const pvCmp = Buffer.compare(bytesOf(gpu.pixelValues), bytesOf(cpu.pixelValues));
      log(
        `${c.case}: ${image.width}x${image.height} -> ${gpu.resizedWidth}x${gpu.resizedHeight}, cuda ${ms.toFixed(1)} ms; ` +
          `resizedRgb ${rgbCmp === 0 ? 'identical' : firstDifference(bytesOf(gpu.resizedRgb), bytesOf(cpu.resizedRgb))}, ` +
          `pixelValues ${pvCmp === 0 ? 'identical' : firstDifference(bytesOf(gpu.pixelValues), bytesOf(cpu.pixelValues))}`,
      );
      expect(gpu.resizedRgb.byteLength).toBe(cpu.resizedRgb.byteLength);
      expect(gpu.pixelValues.byteLength).toBe(cpu.pixelValues.byteLength);
      expect(rgbCmp, 'resizedRgb bytes').toBe(0);
      expect(pvCmp, 'pixelValues bytes').toBe(0);
    });
  }
});

// The GPU benchmark's kernel-profile tables (benchmarks/kernel-profile.ts)
// on synthetic profiles in the JSON shape native/cuda/step_profile.h writes:
// the rates come out as FLOPs and bytes over the time, a shape line names
// the call, and a missing or unreadable file reads as "not written" instead
// of failing the bench.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';

import { printKernelProfiles } from '../benchmarks/gpu.js';
import { formatKernelProfile, profileSibling, readKernelProfile, type KernelProfile } from '../benchmarks/kernel-profile.js';

const dir = mkdtempSync(join(tmpdir(), 'rex-kernel-profile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Round numbers, so the rates divide cleanly.
const prefill: KernelProfile = {
  kernels: [
    { kind: 'qkv_proj (cuBLASLt)', us: 1000, launches: 36, bytes: 2e9, flops: 5e11 },  // 500 TFLOP/s, 2000 GB/s
    { kind: 'add_rmsnorm', us: 250, launches: 72, bytes: 5e8, flops: 0 },  // 2000 GB/s, no FLOPs
  ],
  total_us: 1250,
  rows: 990,
  past: 0,
};

const cells = (line: string) => line.trim().split(/\s{2,}/);

describe('kernel profile tables', () => {
  it('reads a written profile and gives TFLOP/s and GB/s per kind', () => {
    const file = join(dir, 'prefill-profile.json');
    writeFileSync(file, JSON.stringify(prefill));
    const p = readKernelProfile(file);
    expect(p).toEqual(prefill);
    const text = formatKernelProfile('one prefill call', p, { file, copyBandwidthBytesPerSecond: 4e12 });
    const lines = text.split('\n');
    expect(lines[0]).toBe('one prefill call (rows 990, past 0): total 1.250 ms, 0.500 TFLOP, 400.0 TFLOP/s overall');
    expect(cells(lines[1]!)).toEqual(['kernel', 'launches', 'us', '%', 'TFLOP/s', 'MB', 'GB/s', 'floor us']);
    expect(cells(lines[3]!)).toEqual(['qkv_proj (cuBLASLt)', '36', '1000.0', '80.0', '500.0', '2000.00', '2000', '500.0']);
    expect(cells(lines[4]!)).toEqual(['add_rmsnorm', '72', '250.0', '20.0', '-', '500.00', '2000', '125.0']);
  });

  it('takes a profile of the old shape (no flops) and a vision pass\'s shape fields', () => {
    const old = { kernels: [{ kind: 'embed', us: 20, launches: 1, bytes: 1e4 }], total_us: 20 };
    const text = formatKernelProfile('one batch-1 step', old);
    expect(text.split('\n')[0]).toBe('one batch-1 step: total 0.020 ms');
    expect(cells(text.split('\n')[3]!)).toEqual(['embed', '1', '20.0', '100.0', '-', '0.01', '1', '-']);
    const vision = { ...prefill, rows: undefined, past: undefined, patches: 3888, images: 1, windows: 63 };
    expect(formatKernelProfile('one vision pass', vision).split('\n')[0]).toMatch(/^one vision pass \(patches 3888, images 1, windows 63\): /);
  });

  it('reports a missing or unreadable file as not written', () => {
    const missing = join(dir, 'absent.json');
    expect(readKernelProfile(missing)).toBeUndefined();
    expect(formatKernelProfile('one vision pass', readKernelProfile(missing), { file: missing })).toBe(
      `one vision pass: the profile was not written (${missing})`,
    );
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{"kernels":[');
    expect(readKernelProfile(broken)).toBeUndefined();
  });

  it('names the files beside a profile as the backend does', () => {
    expect(profileSibling('/x/prefill-profile.json', '.vision')).toBe('/x/prefill-profile.vision.json');
    expect(profileSibling('/x/step-profile.json', '.batch8')).toBe('/x/step-profile.batch8.json');
    expect(profileSibling('/x/profile', '.vision')).toBe('/x/profile.vision.json');
  });

  it('prints every table of a bench result, the missing ones as a line', () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    try {
      printKernelProfiles({
        gpu: { copyBandwidthBytesPerSecond: undefined },
        stepProfile: prefill,
        stepProfileBatch8: undefined,
        stepProfileBatch64: undefined,
        prefillProfile: prefill,
        visionProfile: undefined,
        suffixProfile: prefill,
        profileFiles: {
          step: '/x/step-profile.json',
          prefill: '/x/prefill-profile.json',
          vision: '/x/prefill-profile.vision.json',
          suffix: '/x/prefill-profile.suffix.json',
        },
      });
      const out = log.mock.calls.map((c) => String(c[0]));
      expect(out).toHaveLength(6);
      expect(out[0]).toMatch(/^one batch-1 step, eager, kernel by kernel \(rows 990, past 0\): total 1\.250 ms/);
      expect(out[1]).toBe('one batch-8 step, eager, kernel by kernel: the profile was not written (/x/step-profile.batch8.json)');
      expect(out[3]).toMatch(/^one prefill call, eager, kernel by kernel \(rows 990, past 0\).*\n.*TFLOP\/s/);
      expect(out[4]).toBe('one vision pass, eager, kernel by kernel: the profile was not written (/x/prefill-profile.vision.json)');
      expect(out[5]).toMatch(/^a question's prefill after its image's prefix, eager, kernel by kernel \(rows 990, past 0\)/);
    } finally {
      log.mockRestore();
    }
  });
});

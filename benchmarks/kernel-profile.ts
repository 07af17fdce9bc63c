// The kernel-by-kernel profiles the CUDA backend writes (native/cuda/step_profile.h):
// cudaEvents around each launch of one eager call, summed per kernel kind,
// with the bytes each kind must move and the FLOPs it computes. The GPU
// benchmark (benchmarks/gpu.ts) asks for them through REX_OMNI_PROFILE_STEP
// (decode steps) and REX_OMNI_PROFILE_PREFILL (one prefill call, and one
// vision pass beside it in <file minus .json>.vision.json), reads them after
// its runs and prints them with formatKernelProfile.
import { existsSync, readFileSync } from 'node:fs';

import { textTable } from '../test/fixtures/gpu-harness.js';

export interface KernelProfile {
  kernels: { kind: string; us: number; launches: number; bytes: number; flops?: number }[];
  total_us: number;
  /** The call's shape: decode and prefill rows, the prefill's cached tokens before it, the vision pass's patches, images and windows. */
  rows?: number;
  past?: number;
  patches?: number;
  images?: number;
  windows?: number;
}

/** The profile in `file`, or undefined when it was not written (or cannot be read). */
export function readKernelProfile(file: string): KernelProfile | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const p = JSON.parse(readFileSync(file, 'utf8')) as KernelProfile;
    return Array.isArray(p.kernels) ? p : undefined;
  } catch {
    return undefined;
  }
}

/** `<file minus .json><suffix>.json`: a profile written beside another (as step_profile.h's profile_sibling). */
export function profileSibling(file: string, suffix: string): string {
  return `${file.replace(/\.json$/, '')}${suffix}.json`;
}

const fixed = (v: number, digits: number): string => (Number.isFinite(v) ? v.toFixed(digits) : '-');

/**
 * A table of the profile: per kernel kind its launches, µs, share of the
 * total, TFLOP/s achieved (flops / time), MB and GB/s, and the bandwidth
 * floor when the copy bandwidth is known. A missing profile gives one line
 * that says it was not written.
 */
export function formatKernelProfile(
  title: string,
  p: KernelProfile | undefined,
  options: { file?: string; copyBandwidthBytesPerSecond?: number } = {},
): string {
  if (!p) return `${title}: the profile was not written${options.file ? ` (${options.file})` : ''}`;
  const bw = options.copyBandwidthBytesPerSecond;
  const flops = p.kernels.reduce((s, k) => s + (k.flops ?? 0), 0);
  const shape = (['rows', 'past', 'patches', 'images', 'windows'] as const)
    .filter((key) => typeof p[key] === 'number')
    .map((key) => `${key} ${p[key]}`)
    .join(', ');
  const header =
    `${title}${shape ? ` (${shape})` : ''}: total ${fixed(p.total_us / 1e3, 3)} ms` +
    (flops > 0 ? `, ${fixed(flops / 1e12, 3)} TFLOP, ${fixed(flops / p.total_us / 1e6, 1)} TFLOP/s overall` : '');
  const rows = p.kernels.map((k) => ({
    kernel: k.kind,
    launches: String(k.launches),
    us: fixed(k.us, 1),
    '%': fixed((100 * k.us) / p.total_us, 1),
    'TFLOP/s': k.flops ? fixed(k.flops / k.us / 1e6, 1) : '-',
    MB: fixed(k.bytes / 1e6, 2),
    'GB/s': fixed(k.bytes / (k.us * 1e-6) / 1e9, 0),
    'floor us': bw ? fixed((k.bytes / bw) * 1e6, 1) : '-',
  }));
  return `${header}\n${textTable(rows)}`;
}

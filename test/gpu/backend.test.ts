// GPU machine only (`npm run test:gpu`): the CUDA build loads, finds the
// device, runs its probe kernel and creates a cuBLASLt handle.
import { describe, expect, it } from 'vitest';

import { loadAddon } from '../../lib/native.js';

describe('CUDA backend', () => {
  it('is the backend the loader picks, with a working device', () => {
    const { info, path } = loadAddon();
    expect(path).toMatch(/rex_omni_cuda\.node$/);
    expect(info.backend).toBe('cuda');
    expect(info.available).toBe(true);
    expect(info.device?.cublasLt).toBe(true);
    expect(Number(info.device?.computeCapability)).toBeGreaterThanOrEqual(9);
    console.log(`CUDA device: ${info.device?.name}, ${(info.device!.totalMemory / 2 ** 30).toFixed(1)} GiB`);
  });
});

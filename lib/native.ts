// Finds and loads the native addon.
//
// Order: the CUDA build (build/Release/rex_omni_cuda.node) when it exists,
// loads, and finds a working device; then the CPU build from source
// (build/Release/rex_omni_cpu.node); then the CPU prebuild shipped in
// prebuilds/ (through node-gyp-build). REX_OMNI_BACKEND=cpu|cuda forces one.
// When nothing loads, one error lists every try and why it failed.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { NativeAddon, NativeBackendInfo } from './addon-types.js';
import { RexOmniError } from './errors.js';

const require = createRequire(import.meta.url);

/** The package root: lib/ sits below it in the source tree, dist/lib/ in the build. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new RexOmniError('ERR_REX_NATIVE_LOAD', 'cannot find the rex-omni package root');
    dir = parent;
  }
  return dir;
}

export interface LoadedAddon {
  addon: NativeAddon;
  path: string;
  info: NativeBackendInfo;
}

type Backend = 'cpu' | 'cuda';

function requestedBackend(): Backend | undefined {
  const value = process.env.REX_OMNI_BACKEND;
  if (value === undefined || value === '' || value === 'auto') return undefined;
  if (value === 'cpu' || value === 'cuda') return value;
  throw new RangeError(`REX_OMNI_BACKEND: expected "cpu", "cuda" or "auto" but got ${JSON.stringify(value)}`);
}

function prebuildPath(root: string): string {
  // node-gyp-build would prefer any .node in build/Release (the CUDA build
  // among them); PREBUILDS_ONLY, read when it is first required, stops that.
  const previous = process.env.PREBUILDS_ONLY;
  process.env.PREBUILDS_ONLY = '1';
  try {
    const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };
    return nodeGypBuild.path(root);
  } finally {
    if (previous === undefined) delete process.env.PREBUILDS_ONLY;
    else process.env.PREBUILDS_ONLY = previous;
  }
}

let cached: LoadedAddon | undefined;

/** Loads the best available addon once per process. */
export function loadAddon(): LoadedAddon {
  if (cached) return cached;
  const root = packageRoot();
  const wanted = requestedBackend();
  const failures: string[] = [];

  const tryLoad = (label: string, resolvePath: () => string, backend: Backend): LoadedAddon | undefined => {
    if (wanted && wanted !== backend) return undefined;
    let path = '';
    try {
      path = resolvePath();
      if (!existsSync(path)) {
        failures.push(`${label}: ${path} does not exist`);
        return undefined;
      }
      const addon = require(path) as NativeAddon;
      const info = addon.backendInfo();
      if (!info.available) {
        failures.push(`${label}: ${path} loaded, but ${info.error ?? 'the backend is unavailable'}`);
        return undefined;
      }
      return { addon, path, info };
    } catch (error) {
      failures.push(`${label}: ${path || '(not found)'}: ${(error as Error).message.split('\n')[0]}`);
      return undefined;
    }
  };

  cached =
    tryLoad('CUDA build', () => join(root, 'build', 'Release', 'rex_omni_cuda.node'), 'cuda') ??
    tryLoad('CPU build', () => join(root, 'build', 'Release', 'rex_omni_cpu.node'), 'cpu') ??
    tryLoad('CPU prebuild', () => prebuildPath(root), 'cpu');
  if (!cached) {
    throw new RexOmniError(
      'ERR_REX_NATIVE_LOAD',
      `rex-omni could not load its native addon${wanted ? ` (REX_OMNI_BACKEND=${wanted})` : ''}. Tried:\n` +
        failures.map((line) => `  - ${line}`).join('\n') +
        '\nRebuild it with `npm run build:native` (needs cmake and a C++17 compiler; CUDA is optional).',
    );
  }
  return cached;
}

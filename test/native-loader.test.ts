// The native loader: which build it picks, and the one aggregated message
// when nothing loads.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { loadAddon } from '../lib/native.js';

const root = join(import.meta.dirname, '..');

// A fresh process (the loader caches its choice), running the compiled loader
// that `npm install` builds into dist/.
function loadIn(env: Record<string, string>): string {
  const run = spawnSync(
    process.execPath,
    ['-e', `import('${join(root, 'dist', 'lib', 'native.js')}').then(m => { try { console.log(m.loadAddon().info.backend) } catch (e) { console.log(e.code + '\\n' + e.message) } })`],
    { env: { ...process.env, ...env }, encoding: 'utf8' },
  );
  return run.stdout + run.stderr;
}

describe('loadAddon', () => {
  it('loads a backend here and says which', () => {
    const { info, path } = loadAddon();
    expect(['cpu', 'cuda']).toContain(info.backend);
    expect(info.available).toBe(true);
    expect(path).toMatch(/\.node$/);
  });

  it('names every try in one message when the forced backend cannot load', () => {
    const output = loadIn({ REX_OMNI_BACKEND: 'cuda' });
    if (loadAddon().info.backend === 'cuda') return expect(output.trim()).toBe('cuda');
    expect(output).toContain('ERR_REX_NATIVE_LOAD');
    expect(output).toContain('rex-omni could not load its native addon (REX_OMNI_BACKEND=cuda). Tried:');
    expect(output).toContain('CUDA build:');
    expect(output).toContain('npm run build:native');
  });

  it('rejects an unknown REX_OMNI_BACKEND with the expected values', () => {
    expect(loadIn({ REX_OMNI_BACKEND: 'tpu' })).toContain('REX_OMNI_BACKEND: expected "cpu", "cuda" or "auto" but got "tpu"');
  });
});

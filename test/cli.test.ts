// The rex-omni command line (the README's main command), on the tiny checkpoint.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { repoRoot } from './fixtures/repo-root.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

const cli = join(repoRoot(), 'dist', 'lib', 'cli.js');
const cafe = join(repoRoot(), 'test', 'fixtures', 'images', 'cafe.jpg');
let tiny: string;

beforeAll(async () => {
  tiny = await ensureTinyCheckpoint();
});

const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

describe('rex-omni CLI', () => {
  it('detect streams one JSON line per box, then a summary', () => {
    const out = run('detect', cafe, '--model', tiny, '--categories', 'person,cup', '--max-pixels', '50176', '--max-new-tokens', '40');
    expect(out.status, out.stderr).toBe(0);
    const lines = out.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    const summary = lines.at(-1)!;
    expect(summary.done).toMatch(/eos|length/);
    const boxes = lines.slice(0, -1);
    expect(boxes.length).toBe(summary.predictions);
    for (const box of boxes) {
      expect(['person', 'cup']).toContain(box.phrase);
      expect(box.box).toHaveLength(4);
    }
  });

  it('info prints the config', () => {
    const out = run('info', tiny);
    expect(out.status, out.stderr).toBe(0);
    expect(JSON.parse(out.stdout).config.architecture).toBe('Qwen2_5_VLForConditionalGeneration');
  });

  it('fails with a message and a non-zero exit on bad arguments', () => {
    const out = run('detect', cafe, '--model', tiny);
    expect(out.status).toBe(1);
    expect(out.stderr).toContain('rex-omni detect: expected --categories <a,b,...> but got nothing');
    expect(run('frobnicate').stderr).toContain('unknown command "frobnicate"');
  });
});

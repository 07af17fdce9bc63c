// The rex-omni command line end to end on the tiny checkpoint, with the
// images of test/fixtures/images: every task with its pictures drawn, every
// output format, and a folder of several images with an unreadable one in it.
// Small --max-pixels and token budgets keep each run to a second or two.
import { copyFile, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';

import { phraseColour } from '../lib/draw/colours.js';
import { IMAGES_DIR, jsonLines, runCli } from './fixtures/run-cli.js';
import { useScratchDir } from './fixtures/scratch-dir.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

const SMALL = ['--max-pixels', '50176', '--max-new-tokens', '48', '--max-phrase-tokens', '3'];
const image = (name: string) => join(IMAGES_DIR, name);
const scratchDir = useScratchDir('rex-cli-');
let tiny: string;

beforeAll(async () => {
  tiny = await ensureTinyCheckpoint();
});

// Inputs on which the tiny checkpoint's greedy output has predictions for each task.
const TASKS = [
  { command: 'detect', kind: 'box', file: 'cafe.jpg', args: ['--categories', 'person,cup'], phrases: ['person', 'cup'] },
  { command: 'point', kind: 'point', file: 'cup.png', args: ['--categories', 'handle'], phrases: ['handle'] },
  { command: 'visual-prompt', kind: 'box', file: 'layout.jpg', args: ['--boxes', '10,10,60,60'] },
  { command: 'keypoints', kind: 'keypoints', file: 'person.png', args: ['--keypoints', 'person'] },
  { command: 'ocr-boxes', kind: 'box', file: 'layout.jpg', args: ['--granularity', 'word'] },
  { command: 'ocr-polygons', kind: 'polygon', file: 'layout.jpg', args: ['--granularity', 'text line'] },
  { command: 'gui-ground', kind: 'box', file: 'gui.png', args: ['--element', 'search'] },
  { command: 'gui-point', kind: 'point', file: 'gui.png', args: ['--element', 'search'] },
] as const;

describe('every task, as JSON lines, with its picture drawn', () => {
  it.each(TASKS)('$command', async (t) => {
    const out = join(scratchDir(), t.command);
    const run = await runCli([t.command, image(t.file), ...t.args, '--model', tiny, ...SMALL, '--jsonl', '--out', out]);
    expect(run.status, run.stderr).toBe(0);
    const lines = jsonLines(run.stdout);
    const predictions = lines.filter((l) => l.type === 'prediction');
    expect(predictions.length).toBeGreaterThan(0);
    for (const p of predictions) {
      expect(p).toMatchObject({ image: image(t.file), kind: t.kind });
      if ('phrases' in t) expect(t.phrases).toContain(p.phrase);
    }
    // Predictions stream first, then the image's line, then the summary.
    expect(lines.map((l) => l.type)).toEqual([...predictions.map(() => 'prediction'), 'image', 'summary']);
    const drawn = join(out, t.file);
    expect(lines.at(-2)).toMatchObject({ type: 'image', predictions: predictions.length, drawn, complete: true });
    expect(lines.at(-1)).toEqual({ type: 'summary', images: 1, succeeded: 1, failed: 0, predictions: predictions.length, meanMsPerImage: expect.any(Number) });
    const [source, picture] = await Promise.all([sharp(image(t.file)).metadata(), sharp(drawn).metadata()]);
    expect([picture.width, picture.height]).toEqual([source.width, source.height]);
  });

  it('draws a predicted point in its phrase colour at its place', async () => {
    const out = join(scratchDir(), 'point-pixels');
    const run = await runCli(['point', image('cup.png'), '--categories', 'handle', '--model', tiny, ...SMALL, '--jsonl', '--out', out]);
    expect(run.status, run.stderr).toBe(0);
    const points = jsonLines(run.stdout).filter((l) => l.type === 'prediction') as { point: [number, number] }[];
    const read = async (path: string) => sharp(path).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const [before, after] = await Promise.all([read(image('cup.png')), read(join(out, 'cup.png'))]);
    const colour = phraseColour('handle');
    for (const { point } of points) {
      const i = (Math.round(point[1]) * after.info.width + Math.round(point[0])) * 3;
      const drawnPixel = [...after.data.subarray(i, i + 3)];
      expect(drawnPixel).toEqual([...colour]);
      expect([...before.data.subarray(i, i + 3)]).not.toEqual([...colour]);
    }
  });
});

describe('output formats', () => {
  it('--json prints one document with every image, its predictions and the summary', async () => {
    const run = await runCli(['detect', image('cafe.jpg'), '-c', 'person,cup', '-m', tiny, ...SMALL, '--json']);
    expect(run.status, run.stderr).toBe(0);
    const doc = JSON.parse(run.stdout) as { images: { image: string; predictions: { kind: string; box: number[] }[]; tokens: object }[]; summary: object };
    expect(doc.images).toHaveLength(1);
    expect(doc.images[0]!.image).toBe(image('cafe.jpg'));
    expect(doc.images[0]!.predictions.length).toBeGreaterThan(0);
    for (const p of doc.images[0]!.predictions) expect(p.box).toHaveLength(4);
    expect(doc.summary).toMatchObject({ images: 1, failed: 0, predictions: doc.images[0]!.predictions.length });
  });

  it('prints JSON lines by default when the output is not a terminal', async () => {
    const run = await runCli(['detect', image('cafe.jpg'), '-c', 'person,cup', '-m', tiny, ...SMALL]);
    expect(run.status, run.stderr).toBe(0);
    const types = jsonLines(run.stdout).map((l) => l.type);
    expect(types.at(-1)).toBe('summary');
    expect(types).toContain('prediction');
  });
});

describe('a folder of several images', () => {
  it('loads the model once, streams each image, skips an unreadable one, sums up and exits 3', async () => {
    const folder = join(scratchDir(), 'folder');
    const out = join(scratchDir(), 'folder-drawn');
    await rm(folder, { recursive: true, force: true });
    await mkdir(folder);
    const names = ['animal.png', 'boys.jpg', 'cafe.jpg', 'cup.png'];
    for (const name of names) await copyFile(image(name), join(folder, name));
    await writeFile(join(folder, 'broken.png'), 'this is not a PNG');
    await writeFile(join(folder, 'notes.txt'), 'not an image name: not listed');

    const run = await runCli(['detect', folder, '-c', 'person,cup', '-m', tiny, ...SMALL, '--out', out, '--verbose']);
    expect(run.status).toBe(3);
    expect(run.stderr.match(/^rex-omni: loaded .* on cpu in \d+ ms$/gm)).toHaveLength(1);
    expect(run.stderr).toMatch(new RegExp(`^rex-omni: skipped ${join(folder, 'broken.png').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: .*no format sharp can decode`, 'm'));
    expect(run.stderr).not.toMatch(/images\/s|ETA/); // no progress bar off a terminal
    const lines = jsonLines(run.stdout);
    const order = ['animal.png', 'boys.jpg', 'broken.png', 'cafe.jpg', 'cup.png'];
    // Each image's lines come together, in order: its predictions, then its image or error line.
    const perImage = lines.filter((l) => l.type === 'image' || l.type === 'error').map((l) => l.image);
    expect(perImage).toEqual(order.map((name) => join(folder, name)));
    let current = 0;
    for (const line of lines.filter((l) => l.type !== 'summary')) {
      expect(line.image).toBe(join(folder, order[current]!));
      if (line.type !== 'prediction') current++;
    }
    expect(lines.find((l) => l.type === 'error')).toMatchObject({ image: join(folder, 'broken.png'), code: 'ERR_REX_IMAGE_FORMAT' });
    const predictions = lines.filter((l) => l.type === 'prediction').length;
    expect(lines.at(-1)).toEqual({ type: 'summary', images: 5, succeeded: 4, failed: 1, predictions, meanMsPerImage: expect.any(Number) });
    expect((await readdir(out)).sort()).toEqual(names);
  });

  it('takes a quoted glob', async () => {
    const run = await runCli(['point', `${IMAGES_DIR}/c*.png`, '-c', 'handle', '-m', tiny, ...SMALL, '--json']);
    expect(run.status, run.stderr).toBe(0);
    const doc = JSON.parse(run.stdout) as { images: { image: string }[] };
    expect(doc.images.map((i) => i.image)).toEqual([image('cup.png')]);
  });
});

// The command line's pieces that need no model: option parsers, input
// expansion (files, folders, globs), the output format choice, prediction
// records, the terminal table, the summary, and the model argument.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError } from 'commander';
import { beforeAll, describe, expect, it } from 'vitest';

import { expandInputs } from '../lib/cli/inputs.js';
import { resolveModel } from '../lib/cli/model-source.js';
import { boxList, commaList, positiveInteger } from '../lib/cli/option-parsers.js';
import { predictionRecord } from '../lib/cli/output/records.js';
import { chooseFormat } from '../lib/cli/output/sinks.js';
import { SummaryCounter, summaryLine } from '../lib/cli/output/summary.js';
import { predictionsTable, renderTable } from '../lib/cli/output/table.js';
import { cudaVersion } from '../lib/cli/commands/info-format.js';
import { parseHubId } from '../lib/hub/hub-id.js';
import { rexOmniCacheDir } from '../lib/hub/cache-dir.js';
import type { Prediction } from '../lib/predictions.js';
import { useScratchDir } from './fixtures/scratch-dir.js';

const scratchDir = useScratchDir('rex-cli-parts-');
let dir: string;
beforeAll(async () => {
  dir = scratchDir();
  await mkdir(join(dir, 'photos'));
  for (const name of ['b.jpg', 'a.png', 'c.JPEG', 'notes.txt']) await writeFile(join(dir, 'photos', name), 'x');
  await mkdir(join(dir, 'photos', 'nested'));
  await writeFile(join(dir, 'photos', 'nested', 'd.png'), 'x');
  await mkdir(join(dir, 'empty'));
});

describe('option parsers', () => {
  it('read positive integers, comma lists and boxes, and reject anything else with a reason', () => {
    expect(positiveInteger('50176')).toBe(50176);
    for (const bad of ['0', '-3', '1.5', 'abc', '']) expect(() => positiveInteger(bad)).toThrow(InvalidArgumentError);
    expect(commaList(' person, cup ,,traffic light')).toEqual(['person', 'cup', 'traffic light']);
    expect(() => commaList(' , ')).toThrow('expected a comma-separated list');
    expect(boxList('10,20,110,200; 300,40,380,160')).toEqual([
      [10, 20, 110, 200],
      [300, 40, 380, 160],
    ]);
    expect(() => boxList('1,2,3')).toThrow('expected a box of 4 numbers x0,y0,x1,y1 but got "1,2,3"');
    expect(() => boxList('50,0,10,10')).toThrow('expected x0 <= x1 and y0 <= y1');
  });
});

describe('expandInputs', () => {
  it('lists a folder’s images sorted, not recursively, and skips other files', async () => {
    expect(await expandInputs(['photos'], dir)).toEqual([join('photos', 'a.png'), join('photos', 'b.jpg'), join('photos', 'c.JPEG')]);
  });

  it('expands globs, keeps plain files, and drops repeats', async () => {
    expect(await expandInputs(['photos/**/*.png', 'photos/a.png'], dir)).toEqual(['photos/a.png', 'photos/nested/d.png']);
  });

  it('names a missing path, an empty folder and a glob that matches nothing', async () => {
    await expect(expandInputs(['nope.jpg'], dir)).rejects.toThrow(`no such image file or folder: ${join(dir, 'nope.jpg')}`);
    await expect(expandInputs(['empty'], dir)).rejects.toThrow('no image files (jpg, png, webp, avif, tiff, gif) in the folder empty');
    await expect(expandInputs(['photos/*.gif'], dir)).rejects.toThrow('no image file matches photos/*.gif');
  });
});

describe('--model', () => {
  it('takes a folder, refuses a file, and tells a missing folder from a hub id', async () => {
    expect(await resolveModel(join(dir, 'photos'))).toBe(join(dir, 'photos'));
    await expect(resolveModel(join(dir, 'photos', 'a.png'))).rejects.toThrow('expected a checkpoint folder but');
    await expect(resolveModel(join(dir, 'missing'))).rejects.toThrow(`no model folder at ${join(dir, 'missing')}`);
    expect(parseHubId('IDEA-Research/Rex-Omni')).toEqual({ repo: 'IDEA-Research/Rex-Omni', revision: 'main' });
    expect(parseHubId('IDEA-Research/Rex-Omni@v1.0')).toEqual({ repo: 'IDEA-Research/Rex-Omni', revision: 'v1.0' });
    for (const notId of ['/abs/path', './rel/x', 'a/b/c', 'single', '../x']) expect(parseHubId(notId), notId).toBeUndefined();
  });

  it('caches in REX_OMNI_CACHE, else XDG_CACHE_HOME/rex-omni, else ~/.cache/rex-omni', () => {
    expect(rexOmniCacheDir({ REX_OMNI_CACHE: '/x/cache' })).toBe('/x/cache');
    if (process.platform !== 'win32') {
      expect(rexOmniCacheDir({ XDG_CACHE_HOME: '/xdg' })).toBe('/xdg/rex-omni');
      expect(rexOmniCacheDir({})).toMatch(/[/\\]\.cache[/\\]rex-omni$/);
    }
  });
});

const predictions: Prediction[] = [
  { kind: 'box', phrase: 'person', score: 0.91234, coords: [10.04, 20.06, 110.5, 220.449], bins: [1, 2, 3, 4] },
  { kind: 'point', phrase: 'handle', coords: [5.55, 6.66], bins: [1, 2] },
  { kind: 'polygon', phrase: 'EXIT', score: 0.5, coords: [[1, 2], [3, 4], [5, 6], [7, 8]], bins: [] },
  {
    kind: 'keypoints',
    phrase: 'person',
    instanceId: 'person1',
    score: 0.25,
    coords: [0, 0, 50, 100],
    bins: [0, 0, 0, 0],
    keypoints: { nose: { coords: [25, 10], bins: [0, 0] }, 'left eye': null },
  },
];

describe('output', () => {
  it('is a table on a terminal and JSON lines in a pipe unless asked', () => {
    expect(chooseFormat({}, true)).toBe('table');
    expect(chooseFormat({}, false)).toBe('jsonl');
    expect(chooseFormat({ json: true }, true)).toBe('json');
    expect(chooseFormat({ jsonl: true }, true)).toBe('jsonl');
  });

  it('records pixel coordinates to 0.1 px, keypoints by name, unseen ones as null', () => {
    expect(predictions.map(predictionRecord)).toEqual([
      { kind: 'box', phrase: 'person', score: 0.9123, box: [10, 20.1, 110.5, 220.4] },
      { kind: 'point', phrase: 'handle', point: [5.6, 6.7] },
      { kind: 'polygon', phrase: 'EXIT', score: 0.5, polygon: [[1, 2], [3, 4], [5, 6], [7, 8]] },
      { kind: 'keypoints', phrase: 'person', instance: 'person1', score: 0.25, box: [0, 0, 50, 100], keypoints: { nose: [25, 10], 'left eye': null } },
    ]);
  });

  it('prints a table with phrase, score, kind and pixel coordinates', () => {
    expect(predictionsTable(predictions).split('\n')).toEqual([
      '#  phrase            score  kind       pixels (x, y)',
      '─  ────────────────  ─────  ─────────  ─────────────────────────────────────────',
      '1  person            0.912  box        (10, 20) – (111, 220)',
      '2  handle                   point      (6, 7)',
      '3  EXIT              0.500  polygon    4 vertices: (1, 2) (3, 4) (5, 6) …',
      '4  person (person1)  0.250  keypoints  (0, 0) – (50, 100), 1/2 keypoints visible',
    ]);
    expect(renderTable(['a', 'b'], [['咖啡', 'x']])).toBe('a     b\n────  ─\n咖啡  x'); // wide characters take two cells
  });

  it('sums a run: images, predictions, failures and the mean time per image', () => {
    const counter = new SummaryCounter();
    counter.add({ predictions: 3, ms: 100 });
    counter.add({ ms: 50, failed: true });
    counter.add({ predictions: 2, ms: 150 });
    expect(counter.summary()).toEqual({ images: 3, succeeded: 2, failed: 1, predictions: 5, meanMsPerImage: 100 });
    expect(summaryLine(counter.summary())).toBe('3 images · 5 predictions · 1 failed · 100 ms per image');
  });

  it('writes CUDA versions as major.minor', () => {
    expect(cudaVersion(13000)).toBe('13.0');
    expect(cudaVersion(12040)).toBe('12.4');
  });
});

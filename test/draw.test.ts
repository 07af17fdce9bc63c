// Drawing results (lib/draw): the pixels at predicted places carry the
// phrase's colour, labels are filled boxes inside the image with contrasting
// text, keypoint skeletons follow the limb pairs, and EXIF orientation is
// applied as the model saw the image.
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';

import { phraseColour, textColourOn, type Rgb } from '../lib/draw/colours.js';
import { placeLabel } from '../lib/draw/labels.js';
import { labelText, overlayStyle, predictionLabel } from '../lib/draw/overlay.js';
import { drawPredictions } from '../lib/draw/render.js';
import { ANIMAL_LIMBS, PERSON_LIMBS, limbsFor } from '../lib/draw/skeletons.js';
import type { Keypoint, Prediction, XY } from '../lib/predictions.js';
import { KEYPOINT_NAMES } from '../lib/tasks/index.js';
import { IMAGES_DIR } from './fixtures/run-cli.js';
import { useScratchDir } from './fixtures/scratch-dir.js';

const W = 400;
const H = 300;
const scratchDir = useScratchDir('rex-draw-');

async function plainImage(value: number): Promise<Buffer> {
  return sharp({ create: { width: W, height: H, channels: 3, background: { r: value, g: value, b: value } } }).png().toBuffer();
}

async function pixels(path: string) {
  const { data, info } = await sharp(path).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return {
    info,
    at: (x: number, y: number): Rgb => {
      const i = (Math.round(y) * info.width + Math.round(x)) * 3;
      return [data[i]!, data[i + 1]!, data[i + 2]!];
    },
  };
}

const near = (a: Rgb, b: Rgb, tolerance = 6) => a.every((v, i) => Math.abs(v - b[i]!) <= tolerance);
/** Whether a pixel within one of (x, y) is near `colour` (thin slanted lines are antialiased). */
const nearby = (at: (x: number, y: number) => Rgb, x: number, y: number, colour: Rgb) =>
  [-1, 0, 1].some((dx) => [-1, 0, 1].some((dy) => near(at(x + dx, y + dy), colour)));

const box = (phrase: string, coords: [number, number, number, number], score = 0.5): Prediction => ({ kind: 'box', phrase, score, coords, bins: [0, 0, 0, 0] });
const point = (phrase: string, coords: XY): Prediction => ({ kind: 'point', phrase, score: 0.25, coords, bins: [0, 0] });

describe('colours', () => {
  it('gives a phrase the same colour every time, and different phrases different colours', () => {
    expect(phraseColour('person')).toEqual(phraseColour('person'));
    const colours = new Set(['person', 'cup', 'cat', 'dog', 'car', 'traffic light'].map((p) => phraseColour(p).join(',')));
    expect(colours.size).toBe(6);
  });

  it('writes black on light colours and white on dark ones', () => {
    expect(textColourOn([255, 230, 80])).toEqual([0, 0, 0]);
    expect(textColourOn([20, 30, 140])).toEqual([255, 255, 255]);
  });
});

describe('labels', () => {
  const style = overlayStyle({ width: W, height: H });

  it('stay inside the image at every edge, shortened when wider than the image', () => {
    const corners = [
      { x: -50, y: -50 },
      { x: W - 5, y: H - 5 },
      { x: W / 2, y: -100 },
    ];
    for (const at of corners) {
      const label = placeLabel('person 0.93', at, { width: W, height: H }, style);
      expect(label.x).toBeGreaterThanOrEqual(0);
      expect(label.y).toBeGreaterThanOrEqual(0);
      expect(label.x + label.width).toBeLessThanOrEqual(W);
      expect(label.y + label.height).toBeLessThanOrEqual(H);
    }
    const long = placeLabel('x'.repeat(500), { x: 0, y: 0 }, { width: W, height: H }, style);
    expect(long.width).toBeLessThanOrEqual(W);
    expect(long.text.endsWith('…')).toBe(true);
  });

  it('read "<phrase> <score>" (the instance key for keypoints)', () => {
    expect(labelText(box('cup', [0, 0, 1, 1], 0.4567))).toBe('cup 0.46');
    expect(labelText({ ...box('person', [0, 0, 1, 1]), kind: 'keypoints', instanceId: 'person2', keypoints: {} })).toBe('person2 0.50');
  });
});

describe('drawPredictions', () => {
  it('draws boxes, points and polygons in their phrase colours, over grey, and leaves the rest alone', async () => {
    const out = join(scratchDir(), 'shapes.png');
    const polygon: Prediction = { kind: 'polygon', phrase: 'sign', score: 0.3, coords: [[260, 200], [380, 210], [370, 280], [270, 270]], bins: [] };
    await drawPredictions(await plainImage(128), [box('cat', [40, 80, 200, 260]), point('dog', [300, 60]), polygon], out);
    const { info, at } = await pixels(out);
    expect([info.width, info.height]).toEqual([W, H]);
    expect(near(at(40, 170), phraseColour('cat'))).toBe(true); // the left edge
    expect(near(at(200, 170), phraseColour('cat'))).toBe(true); // the right edge
    expect(near(at(120, 170), [128, 128, 128], 0)).toBe(true); // inside the box: untouched
    expect(near(at(300, 60), phraseColour('dog'))).toBe(true); // the point
    expect(near(at(320, 205), phraseColour('sign'))).toBe(true); // on the polygon's top edge
    expect(near(at(10, 10), [128, 128, 128], 0)).toBe(true); // far from everything
  });

  it("fills a box's label with its colour, above the box, or inside it at the image's top edge", async () => {
    for (const background of [0, 255]) {
      const out = join(scratchDir(), `labels-${background}.png`);
      const boxes = [box('cat', [40, 120, 200, 260]), box('umbrella', [220, 0, 390, 150])];
      await drawPredictions(await plainImage(background), boxes, out);
      const { at } = await pixels(out);
      for (const b of boxes) {
        const [x0, y0] = b.coords as [number, number, number, number];
        const label = predictionLabel(b, { width: W, height: H });
        expect(label.x).toBeCloseTo(x0 - overlayStyle({ width: W, height: H }).strokeWidth / 2, 5);
        if (b.phrase === 'cat') expect(label.y + label.height).toBeLessThanOrEqual(y0); // above the box
        else expect(label.y).toBeGreaterThanOrEqual(y0); // no room above: just inside
        // Most of the label's area is its fill; the rest is its text, black or white.
        let fill = 0;
        let text = 0;
        let total = 0;
        for (let y = Math.ceil(label.y) + 1; y < label.y + label.height - 1; y++) {
          for (let x = Math.ceil(label.x) + 1; x < label.x + label.width - 1; x++) {
            total++;
            const p = at(x, y);
            if (near(p, phraseColour(b.phrase), 8)) fill++;
            else if (near(p, textColourOn(phraseColour(b.phrase)), 40)) text++;
          }
        }
        expect(fill / total).toBeGreaterThan(0.5);
        expect(text).toBeGreaterThan(10);
      }
    }
  });

  it('draws a person skeleton along COCO limb pairs and an animal one along the reference pairs', async () => {
    const person: XY[] = [
      [200, 60], [190, 50], [210, 50], [180, 55], [220, 55], [160, 100], [240, 100], [150, 150], [250, 150],
      [145, 200], [255, 200], [175, 200], [225, 200], [170, 250], [230, 250], [165, 290], [235, 290],
    ];
    const keypoints: Record<string, Keypoint> = Object.fromEntries(KEYPOINT_NAMES.person.map((name, i) => [name, { coords: person[i]!, bins: [0, 0] }]));
    keypoints['right wrist'] = null; // "unvisible": no limb to it
    const instance: Prediction = { kind: 'keypoints', phrase: 'person', instanceId: 'person1', score: 0.9, coords: [140, 40, 260, 295], bins: [0, 0, 0, 0], keypoints };
    const out = join(scratchDir(), 'skeleton.png');
    await drawPredictions(await plainImage(128), [instance], out);
    const { at } = await pixels(out);
    const colour = phraseColour('person');
    expect(near(at(200, 100), colour)).toBe(true); // left shoulder – right shoulder, midway
    expect(nearby(at, 172.5, 225, colour)).toBe(true); // left hip – left knee, midway
    expect(near(at(252.5, 175), [128, 128, 128], 0)).toBe(true); // right elbow – right wrist: not drawn

    expect(limbsFor(KEYPOINT_NAMES.person)).toBe(PERSON_LIMBS);
    expect(limbsFor(KEYPOINT_NAMES.animal)).toBe(ANIMAL_LIMBS);
    expect(PERSON_LIMBS).toHaveLength(19);
    for (const [a, b] of PERSON_LIMBS) expect(KEYPOINT_NAMES.person).toEqual(expect.arrayContaining([a, b]));
    for (const [a, b] of ANIMAL_LIMBS) expect(KEYPOINT_NAMES.animal).toEqual(expect.arrayContaining([a, b]));
  });

  it('turns the picture upright by its EXIF orientation, as the model saw it', async () => {
    const out = join(scratchDir(), 'exif.png');
    const size = await drawPredictions(join(IMAGES_DIR, 'exif_rot6.jpg'), [box('thing', [10, 10, 80, 150])], out);
    expect(size).toEqual({ width: 96, height: 160 });
    const { info, at } = await pixels(out);
    expect([info.width, info.height]).toEqual([96, 160]);
    expect(near(at(10, 100), phraseColour('thing'))).toBe(true);
  });
});

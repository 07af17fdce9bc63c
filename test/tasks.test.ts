// Task specs: validation messages verbatim, prompts byte for byte against the
// reference templates (REXOMNI.md "Prompt"), and each task's output format.
import { describe, expect, it } from 'vitest';
import {
  KEYPOINT_NAMES,
  TASK_NAMES,
  TASK_OUTPUT,
  allowedPhrases,
  buildTaskPrompt,
  pixelToBin,
  validateTask,
  visualPromptJson,
  type TaskSpec,
} from '../lib/tasks/index.js';

const SIZE = { width: 640, height: 480 };

function expectError(fn: () => unknown, type: typeof TypeError | typeof RangeError, message: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(type);
  expect((caught as Error).message).toBe(message);
  expect((caught as { code?: string }).code).toBe(type === TypeError ? 'ERR_INVALID_ARG_TYPE' : 'ERR_OUT_OF_RANGE');
}

describe('buildTaskPrompt is byte-exact', () => {
  it('detection (categories, referring and layout phrases)', () => {
    expect(buildTaskPrompt({ task: 'detection', categories: ['person', 'cup'] })).toBe(
      'Detect person, cup. Output the bounding box coordinates in [x0, y0, x1, y1] format.',
    );
    expect(buildTaskPrompt({ task: 'detection', categories: ['the man in a red hat'] })).toBe(
      'Detect the man in a red hat. Output the bounding box coordinates in [x0, y0, x1, y1] format.',
    );
    expect(buildTaskPrompt({ task: 'detection', categories: ['title', 'text', 'figure', 'table'] })).toBe(
      'Detect title, text, figure, table. Output the bounding box coordinates in [x0, y0, x1, y1] format.',
    );
  });

  it('pointing (categories and affordance phrases)', () => {
    expect(buildTaskPrompt({ task: 'pointing', categories: ['boy'] })).toBe('Point to boy.');
    expect(buildTaskPrompt({ task: 'pointing', categories: ['where to hold the cup', 'pigeon'] })).toBe(
      'Point to where to hold the cup, pigeon.',
    );
  });

  it('visual prompting (json.dumps layout, int(clamp(v / size, 0, 1) * 999) bins)', () => {
    expect(
      buildTaskPrompt({ task: 'visual_prompting', boxes: [[10, 20, 110, 220], [0, 0, 640, 480]] }, SIZE),
    ).toBe(
      'Given reference boxes {"object_1": ["<15><41><171><457>", "<0><0><999><999>"]} indicating one or more ' +
        'objects, find all similar objects in the image and output their bounding boxes.',
    );
    expect(visualPromptJson([[333.3, 0.5, 333.3, 0.5]], { width: 1000, height: 7 })).toBe('{"object_1": ["<332><71><332><71>"]}');
    expect([pixelToBin(0, 10), pixelToBin(10, 10), pixelToBin(5, 10), pixelToBin(-1, 10), pixelToBin(11, 10)]).toEqual([0, 999, 499, 0, 999]);
  });

  it('keypoint (person and animal, default and given categories)', () => {
    expect(buildTaskPrompt({ task: 'keypoint', keypointType: 'person' })).toBe(
      'Can you detect each person in the image using a [x0, y0, x1, y1] box format, and then provide the coordinates of its ' +
        'nose, left eye, right eye, left ear, right ear, left shoulder, right shoulder, left elbow, right elbow, left wrist, ' +
        'right wrist, left hip, right hip, left knee, right knee, left ankle, right ankle as [x0, y0]? Output the answer in JSON format.',
    );
    expect(buildTaskPrompt({ task: 'keypoint', keypointType: 'animal', categories: ['cat', 'dog'] })).toBe(
      'Can you detect each cat, dog in the image using a [x0, y0, x1, y1] box format, and then provide the coordinates of its ' +
        'left eye, right eye, nose, neck, root of tail, left shoulder, left elbow, left front paw, right shoulder, right elbow, ' +
        'right front paw, left hip, left knee, left back paw, right hip, right knee, right back paw as [x0, y0]? Output the answer in JSON format.',
    );
    expect(buildTaskPrompt({ task: 'keypoint', keypointType: 'animal' })).toContain('Can you detect each animal in the image');
    expect(KEYPOINT_NAMES.person).toHaveLength(17);
    expect(KEYPOINT_NAMES.animal).toHaveLength(17);
  });

  it('OCR boxes and polygons', () => {
    expect(buildTaskPrompt({ task: 'ocr_box', granularity: 'word' })).toBe('Detect all word and recognize them.');
    expect(buildTaskPrompt({ task: 'ocr_box', granularity: 'text line' })).toBe('Detect all text line and recognize them.');
    expect(buildTaskPrompt({ task: 'ocr_polygon', granularity: 'text line' })).toBe(
      'Can you detect all text line in this image in polygon format like [x0, y0, x1, y1, x2, y2 ...] and then recognize them?',
    );
    expect(buildTaskPrompt({ task: 'ocr_polygon', granularity: 'word' })).toBe(
      'Can you detect all word in this image in polygon format like [x0, y0, x1, y1, x2, y2 ...] and then recognize them?',
    );
  });

  it('GUI grounding (with the reference doubled quote) and pointing', () => {
    expect(buildTaskPrompt({ task: 'gui_grounding', element: 'search bar' })).toBe('Detect element "search bar"" in the image.');
    expect(buildTaskPrompt({ task: 'gui_pointing', element: 'search bar' })).toBe('Point to element "search bar".');
  });

  it('matches the prompts recorded in the golden model files', () => {
    expect(buildTaskPrompt({ task: 'detection', categories: ['objects'] })).toBe(
      'Detect objects. Output the bounding box coordinates in [x0, y0, x1, y1] format.',
    );
    expect(buildTaskPrompt({ task: 'pointing', categories: ['objects'] })).toBe('Point to objects.');
  });
});

describe('validateTask', () => {
  it('returns a frozen, defaulted copy', () => {
    const spec = { task: 'keypoint', keypointType: 'person' } as const;
    const task = validateTask(spec);
    expect(task).toEqual({ task: 'keypoint', keypointType: 'person', categories: ['person'] });
    expect(Object.isFrozen(task)).toBe(true);
    const boxes: [number, number, number, number][] = [[1, 2, 3, 4]];
    const vp = validateTask({ task: 'visual_prompting', boxes }, SIZE);
    boxes[0][0] = 99;
    expect(vp).toEqual({ task: 'visual_prompting', boxes: [[1, 2, 3, 4]] });
    expect(validateTask({ task: 'visual_prompting', boxes: [[5, 5, 5, 5], [0, 0, 640, 480]] }, SIZE)).toBeTruthy();
  });

  it('rejects an unknown or missing task', () => {
    const names = '"detection", "pointing", "visual_prompting", "keypoint", "ocr_box", "ocr_polygon", "gui_grounding", "gui_pointing"';
    expectError(() => validateTask({ task: 'segmentation' } as unknown as TaskSpec), RangeError, `task.task: expected one of ${names} but got "segmentation"`);
    expectError(() => validateTask({} as TaskSpec), TypeError, `task.task: expected one of ${names} but got undefined`);
    expectError(
      () => validateTask('detection' as unknown as TaskSpec),
      TypeError,
      'task: expected a task object such as { task: "detection", categories: ["person"] } but got "detection"',
    );
    expect(TASK_NAMES).toHaveLength(8);
  });

  it('rejects missing, empty and non-string categories', () => {
    expectError(
      () => validateTask({ task: 'detection' } as TaskSpec),
      TypeError,
      'detection.categories: expected a non-empty array of non-empty strings but got undefined',
    );
    expectError(
      () => validateTask({ task: 'pointing', categories: [] }),
      RangeError,
      'pointing.categories: expected a non-empty array of non-empty strings but got an array of length 0',
    );
    expectError(
      () => validateTask({ task: 'detection', categories: 'person' as unknown as string[] }),
      TypeError,
      'detection.categories: expected a non-empty array of non-empty strings but got "person"',
    );
    expectError(
      () => validateTask({ task: 'detection', categories: ['cat', 7 as unknown as string] }),
      TypeError,
      'detection.categories[1]: expected a non-empty string but got 7',
    );
    expectError(() => validateTask({ task: 'detection', categories: ['cat', ''] }), RangeError, 'detection.categories[1]: expected a non-empty string but got ""');
    expectError(() => validateTask({ task: 'detection', categories: ['  '] }), RangeError, 'detection.categories[0]: expected a non-empty string but got "  "');
    expectError(
      () => validateTask({ task: 'keypoint', keypointType: 'person', categories: [] }),
      RangeError,
      'keypoint.categories: expected a non-empty array of non-empty strings but got an array of length 0',
    );
  });

  it('rejects an unknown keypoint type, OCR granularity or a blank GUI element', () => {
    expectError(
      () => validateTask({ task: 'keypoint', keypointType: 'hand' as 'person' }),
      RangeError,
      'keypoint.keypointType: expected one of "person", "animal" but got "hand"',
    );
    expectError(
      () => validateTask({ task: 'keypoint' } as TaskSpec),
      TypeError,
      'keypoint.keypointType: expected one of "person", "animal" but got undefined',
    );
    expectError(
      () => validateTask({ task: 'ocr_box', granularity: 'line' as 'word' }),
      RangeError,
      'ocr_box.granularity: expected one of "word", "text line" but got "line"',
    );
    expectError(() => validateTask({ task: 'gui_pointing', element: '' }), RangeError, 'gui_pointing.element: expected a non-empty string but got ""');
    expectError(
      () => validateTask({ task: 'gui_grounding' } as TaskSpec),
      TypeError,
      'gui_grounding.element: expected a non-empty string but got undefined',
    );
  });

  it('rejects visual-prompt boxes that are NaN, negative, inverted or outside the image', () => {
    const vp = (boxes: unknown) => () => validateTask({ task: 'visual_prompting', boxes } as TaskSpec, SIZE);
    expectError(vp([[NaN, 0, 10, 10]]), RangeError, 'visual_prompting.boxes[0][0] (x0): expected a finite number but got NaN');
    expectError(vp([[0, 0, 10, 10], [-1, 0, 10, 10]]), RangeError, 'visual_prompting.boxes[1][0] (x0): expected a number from 0 to 640 (the image width) but got -1');
    expectError(vp([[0, -0.5, 10, 10]]), RangeError, 'visual_prompting.boxes[0][1] (y0): expected a number from 0 to 480 (the image height) but got -0.5');
    expectError(vp([[50, 0, 10, 10]]), RangeError, 'visual_prompting.boxes[0]: expected x0 <= x1 but got [50, 0, 10, 10]');
    expectError(vp([[0, 40, 10, 30]]), RangeError, 'visual_prompting.boxes[0]: expected y0 <= y1 but got [0, 40, 10, 30]');
    expectError(vp([[0, 0, 641, 10]]), RangeError, 'visual_prompting.boxes[0][2] (x1): expected a number from 0 to 640 (the image width) but got 641');
    expectError(vp([[0, 0, 10, 480.5]]), RangeError, 'visual_prompting.boxes[0][3] (y1): expected a number from 0 to 480 (the image height) but got 480.5');
    expectError(vp([[0, 0, 10, Infinity]]), RangeError, 'visual_prompting.boxes[0][3] (y1): expected a finite number but got Infinity');
    expectError(vp([[0, 0, '10', 10]]), TypeError, 'visual_prompting.boxes[0][2] (x1): expected a finite number but got "10"');
    expectError(vp([[0, 0, 10]]), RangeError, 'visual_prompting.boxes[0]: expected a box [x0, y0, x1, y1] of 4 numbers but got an array of length 3');
    expectError(vp([]), RangeError, 'visual_prompting.boxes: expected a non-empty array of [x0, y0, x1, y1] boxes but got an array of length 0');
    expectError(vp(undefined), TypeError, 'visual_prompting.boxes: expected a non-empty array of [x0, y0, x1, y1] boxes but got undefined');
    expectError(
      () => validateTask({ task: 'visual_prompting', boxes: [[0, 0, 1, 1]] }),
      TypeError,
      'visual_prompting imageSize: expected the original image size { width, height } but got undefined',
    );
    expectError(
      () => validateTask({ task: 'visual_prompting', boxes: [[0, 0, 1, 1]] }, { width: 0, height: 5 }),
      RangeError,
      'imageSize.width: expected a positive integer but got 0',
    );
  });
});

describe('task output formats', () => {
  it('gives every task its output kind and phrase policy', () => {
    expect(Object.fromEntries(TASK_NAMES.map((name) => [name, [TASK_OUTPUT[name].kind, TASK_OUTPUT[name].phrases]]))).toEqual({
      detection: ['box', 'categories'],
      pointing: ['point', 'categories'],
      visual_prompting: ['box', 'free'],
      keypoint: ['keypoints', 'json'],
      ocr_box: ['box', 'free'],
      ocr_polygon: ['polygon', 'free'],
      gui_grounding: ['box', 'element'],
      gui_pointing: ['point', 'element'],
    });
    expect(allowedPhrases(validateTask({ task: 'detection', categories: ['cat', 'dog'] }))).toEqual(['cat', 'dog']);
    expect(allowedPhrases(validateTask({ task: 'ocr_box', granularity: 'word' }))).toBeNull();
  });
});

// parseOutput and StreamingOutputParser on reference-style outputs: groups,
// separators, None, points / boxes / polygons, keypoint JSON, truncation, and
// the moment each prediction is emitted while streaming.
import { describe, expect, it } from 'vitest';
import { StreamingOutputParser, parseOutput, type ParseEvent } from '../lib/parse/index.js';

const W = 640;
const H = 480;
const SIZE = { width: W, height: H };
const px = (bin: number, size: number) => (bin / 999) * size;
const G = (phrase: string, items: string) => `<|object_ref_start|>${phrase}<|object_ref_end|><|box_start|>${items}<|box_end|>`;

describe('parseOutput: group syntax', () => {
  it("parses the reference parser's own example (items separated by ', ')", () => {
    const text = '<|object_ref_start|>person<|object_ref_end|><|box_start|><0><35><980><987>, <646><0><999><940><|box_end|><|im_end|>';
    const result = parseOutput(text, 'detection', SIZE);
    expect(result.complete).toBe(true);
    expect(result.unparsed).toEqual([]);
    expect(result.predictions).toEqual([
      { kind: 'box', phrase: 'person', bins: [0, 35, 980, 987], coords: [px(0, W), px(35, H), px(980, W), px(987, H)] },
      { kind: 'box', phrase: 'person', bins: [646, 0, 999, 940], coords: [px(646, W), 0, W, px(940, H)] },
    ]);
    expect(result.groups).toEqual({
      person: [
        { type: 'box', coords: [px(0, W), px(35, H), px(980, W), px(987, H)] },
        { type: 'box', coords: [px(646, W), 0, W, px(940, H)] },
      ],
    });
  });

  it('accepts "," between items, ", " between groups, None, and repeated phrases merged', () => {
    const text = [G('cup', '<1><2><3><4>,<5><6><7><8>'), G('dog', 'None'), G('cup', '<9><10><11><12>')].join(', ') + '<|im_end|>';
    const result = parseOutput(text, 'detection', SIZE);
    expect(Object.keys(result.groups)).toEqual(['cup', 'dog']);
    expect(result.groups.dog).toEqual([]);
    expect(result.groups.cup.map((e) => e.type)).toEqual(['box', 'box', 'box']);
    expect(result.predictions.map((p) => p.bins)).toEqual([
      [1, 2, 3, 4],
      [5, 6, 7, 8],
      [9, 10, 11, 12],
    ]);
    expect(result.unparsed).toEqual([]);
  });

  it('reads points, boxes and polygons by coordinate count, whatever the task', () => {
    const text = G('boy', '<100><200>, <300><400>') + ', ' + G('Hello, world', '<1><2><3><4><5><6><7><8>') + '<|im_end|>';
    const points = parseOutput(text, 'pointing', SIZE);
    expect(points.predictions[0]).toEqual({ kind: 'point', phrase: 'boy', bins: [100, 200], coords: [px(100, W), px(200, H)] });
    expect(points.predictions[2]).toEqual({
      kind: 'polygon',
      phrase: 'Hello, world',
      bins: [
        [1, 2],
        [3, 4],
        [5, 6],
        [7, 8],
      ],
      coords: [
        [px(1, W), px(2, H)],
        [px(3, W), px(4, H)],
        [px(5, W), px(6, H)],
        [px(7, W), px(8, H)],
      ],
    });
    expect(parseOutput(text, 'ocr_polygon', SIZE).groups).toEqual(points.groups);
    expect(points.groups['Hello, world']).toEqual([
      {
        type: 'polygon',
        coords: [
          [px(1, W), px(2, H)],
          [px(3, W), px(4, H)],
          [px(5, W), px(6, H)],
          [px(7, W), px(8, H)],
        ],
      },
    ]);
  });

  it('strips phrases like Python and keeps OCR text verbatim inside', () => {
    const result = parseOutput(G('  Total: $12.50 \n', '<1><2><3><4>'), 'ocr_box', SIZE);
    expect(result.predictions[0].phrase).toBe('Total: $12.50');
    expect(result.complete).toBe(false);
  });

  it('reads a group cut off before <|box_end|> and ignores text after <|im_end|>', () => {
    const cut = parseOutput(G('cat', '<1><2><3><4>') + ', <|object_ref_start|>cat<|object_ref_end|><|box_start|><5><6><7><8>,<9>', 'detection', SIZE);
    expect(cut.predictions.map((p) => p.bins)).toEqual([
      [1, 2, 3, 4],
      [5, 6, 7, 8],
    ]);
    expect(cut.unparsed).toEqual([{ text: '<9>', reason: 'expected 2 (point), 4 (box) or an even number above 4 (polygon) coordinates but got 1' }]);
    expect(cut.complete).toBe(false);

    const after = parseOutput(G('cat', '<1><2><3><4>') + '<|im_end|>' + G('dog', '<5><6><7><8>') + '<|endoftext|>', 'detection', SIZE);
    expect(Object.keys(after.groups)).toEqual(['cat']);
    expect(after.complete).toBe(true);
  });

  it('reports what it skips, with reasons', () => {
    const text =
      'Sure! ' +
      G('cat', '<1><2><3>, <4><5><6><7>, oops<8><9>') +
      ', <|object_ref_start|>a<b<|object_ref_end|><|box_start|><1><2><3><4><|box_end|>' +
      ', <|object_ref_start|>dog<|object_ref_end|> x <|box_start|><1><2><3><4><|box_end|>' +
      ', <|object_ref_start|><|object_ref_end|><|box_start|><1><2><3><4><|box_end|>' +
      ', <|object_ref_start|>bird<|im_end|>';
    const result = parseOutput(text, 'detection', SIZE);
    expect(result.predictions).toHaveLength(2); // <4><5><6><7> and oops<8><9> (a point: stray text ignored, as the reference does)
    expect(result.predictions.map((p) => p.kind)).toEqual(['box', 'point']);
    expect(result.unparsed).toEqual([
      { text: 'Sure!', reason: 'text outside any <|object_ref_start|>…<|box_end|> group' },
      { text: '<1><2><3>', reason: 'expected 2 (point), 4 (box) or an even number above 4 (polygon) coordinates but got 3' },
      { text: ' oops', reason: 'text inside a coordinate list (ignored)' },
      {
        text: '<|object_ref_start|>a<b<|object_ref_end|><|box_start|><1><2><3><4><|box_end|>',
        reason: "a phrase containing '<' (the reference's [^<]+ does not match it)",
      },
      {
        text: '<|object_ref_start|>dog<|object_ref_end|> x <|box_start|><1><2><3><4><|box_end|>',
        reason: 'expected <|box_start|> after <|object_ref_end|>',
      },
      { text: '<|object_ref_start|><|object_ref_end|><|box_start|><1><2><3><4><|box_end|>', reason: 'a group with an empty phrase' },
      { text: '<|object_ref_start|>bird', reason: 'output cut off before <|box_start|>' },
    ]);
    expect(Object.keys(result.groups)).toEqual(['cat']);
  });

  it('takes the task as a spec too, and rejects a bad task or size', () => {
    expect(parseOutput(G('cat', '<1><2>'), { task: 'pointing', categories: ['cat'] }, SIZE).predictions[0].kind).toBe('point');
    expect(() => parseOutput('', 'nope' as 'detection', SIZE)).toThrow(RangeError);
    expect(() => parseOutput('', 'detection', { width: 0, height: 1 })).toThrow(
      'StreamingOutputParser(imageSize).width: expected a positive integer but got 0',
    );
    expect(() => parseOutput(5 as unknown as string, 'detection', SIZE)).toThrow('parseOutput(text): expected a string but got 5');
  });
});

const PERSON = {
  person1: {
    bbox: ' <1> <36> <987> <984> ',
    keypoints: { nose: ' <540> <351> ', 'left eye': ' <559> <316> ', 'right eye': 'unvisible' },
  },
  person2: { bbox: ' <10> <20> <30> <40> ', keypoints: { nose: null, 'left eye': ' <5> ' } },
};

describe('parseOutput: keypoint JSON', () => {
  it('reads instances from a ```json fence', () => {
    const text = '```json\n' + JSON.stringify(PERSON, null, 2) + '\n```<|im_end|>';
    const result = parseOutput(text, 'keypoint', SIZE);
    expect(result.complete).toBe(true);
    expect(result.predictions).toEqual([
      {
        kind: 'keypoints',
        phrase: 'person',
        instanceId: 'person1',
        bins: [1, 36, 987, 984],
        coords: [px(1, W), px(36, H), px(987, W), px(984, H)],
        keypoints: {
          nose: { bins: [540, 351], coords: [px(540, W), px(351, H)] },
          'left eye': { bins: [559, 316], coords: [px(559, W), px(316, H)] },
          'right eye': null,
        },
      },
      {
        kind: 'keypoints',
        phrase: 'person',
        instanceId: 'person2',
        bins: [10, 20, 30, 40],
        coords: [px(10, W), px(20, H), px(30, W), px(40, H)],
        keypoints: { nose: null, 'left eye': null },
      },
    ]);
    expect(result.groups).toEqual({
      person: [
        {
          type: 'keypoint',
          bbox: [px(1, W), px(36, H), px(987, W), px(984, H)],
          keypoints: { nose: [px(540, W), px(351, H)], 'left eye': [px(559, W), px(316, H)], 'right eye': 'unvisible' },
          instance_id: 'person1',
        },
        {
          type: 'keypoint',
          bbox: [px(10, W), px(20, H), px(30, W), px(40, H)],
          keypoints: { nose: 'unvisible', 'left eye': 'unvisible' },
          instance_id: 'person2',
        },
      ],
    });
    expect(result.unparsed).toEqual([
      { text: '{"left eye":" <5> "}', reason: 'expected a keypoint " <x> <y> " or "unvisible" (read as not visible)' },
    ]);
  });

  it('reads JSON without a fence, keeps complete instances of a cut-off output, and skips bad ones', () => {
    const json = JSON.stringify({ cat1: { bbox: ' <1> <2> ', keypoints: {} }, '2': { bbox: ' <1> <2> <3> <4> ', keypoints: {} }, dog1: { bbox: ' <5> <6> <7> <8> ', keypoints: { neck: ' <9> <9> ' } } });
    const cut = json.slice(0, json.indexOf('<9>') + 2);
    const result = parseOutput('Here: ' + cut, 'keypoint', SIZE);
    expect(result.complete).toBe(false);
    expect(result.predictions.map((p) => [p.phrase, (p as { instanceId: string }).instanceId])).toEqual([['keypoint_instance', '2']]);
    expect(result.unparsed.map((u) => u.reason)).toEqual([
      'expected "bbox" to be a string of 4 coordinates " <x0> <y0> <x1> <y1> "',
      'output cut off inside an instance',
    ]);
    expect(parseOutput('no json here<|im_end|>', 'keypoint', SIZE).unparsed).toEqual([
      { text: 'no json here<|im_end|>', reason: 'no JSON object in the keypoint output' },
    ]);
    expect(parseOutput('<|im_end|>', 'keypoint', SIZE).unparsed).toEqual([]);
  });

  it('lets a repeated instance key replace the earlier one in place (json.loads keeps the last)', () => {
    const text = '```json\n{"a1": {"bbox": " <1> <1> <2> <2> ", "keypoints": {}}, "b1": {"bbox": " <3> <3> <4> <4> ", "keypoints": {}}, "a1": {"bbox": " <5> <5> <6> <6> ", "keypoints": {}}}\n```';
    const result = parseOutput(text, 'keypoint', SIZE);
    expect(result.predictions.map((p) => p.bins)).toEqual([
      [5, 5, 6, 6],
      [3, 3, 4, 4],
    ]);
  });
});

describe('StreamingOutputParser', () => {
  it('emits a box the moment its fourth coordinate arrives, even split mid-token', () => {
    const parser = new StreamingOutputParser('detection', SIZE);
    const chunks = ['<|object_ref_start|>ca', 't<|object_ref_end|><|box_s', 'tart|><1', '0><20><30><4', '0', '>', ',<5><6><7><8', '><|box_end|>', '<|im_end|>'];
    const emittedAt = chunks.map((chunk) => parser.push(chunk).map((e) => (e.type === 'prediction' ? e.prediction.bins : e.type)));
    expect(emittedAt).toEqual([[], [], [], [], [], [[10, 20, 30, 40]], [], [[5, 6, 7, 8]], []]);
    expect(parser.finish().predictions).toHaveLength(2);
    expect(parser.finish()).toBe(parser.finish());
  });

  it('emits a point at its second coordinate and a polygon at its separator', () => {
    const points = new StreamingOutputParser('pointing', SIZE);
    expect(points.push(G('boy', '').replace('<|box_end|>', '') + '<1><2>').map((e) => e.type)).toEqual(['prediction']);
    const polygons = new StreamingOutputParser('ocr_polygon', SIZE);
    expect(polygons.push('<|object_ref_start|>Hi<|object_ref_end|><|box_start|><1><2><3><4><5><6>')).toEqual([]);
    expect(polygons.push(',').map((e) => e.type)).toEqual(['prediction']);
  });

  it('retracts an early box that turns out to be a polygon', () => {
    const parser = new StreamingOutputParser('detection', SIZE);
    const events: ParseEvent[] = [];
    for (const ch of G('cat', '<1><2><3><4><5><6>')) events.push(...parser.push(ch));
    events.push(...parser.drain());
    expect(events.map((e) => (e.type === 'unparsed' ? e.type : `${e.type}:${e.prediction.kind}`))).toEqual([
      'prediction:box',
      'retract:box',
      'prediction:polygon',
    ]);
    expect(parser.finish().predictions.map((p) => p.kind)).toEqual(['polygon']);
  });

  it('emits each keypoint instance when its object closes', () => {
    const parser = new StreamingOutputParser({ task: 'keypoint', keypointType: 'person' }, SIZE);
    const text = '```json\n' + JSON.stringify(PERSON) + '\n```';
    const closeOfFirst = text.indexOf('}}') + 2;
    expect(parser.push(text.slice(0, closeOfFirst - 1))).toEqual([]);
    expect(parser.push(text.slice(closeOfFirst - 1, closeOfFirst)).map((e) => e.type)).toEqual(['prediction']);
    parser.push(text.slice(closeOfFirst));
    expect(parser.result.predictions).toHaveLength(2);
    expect(parser.finish().complete).toBe(true);
  });

  it('rejects a non-string chunk', () => {
    expect(() => new StreamingOutputParser('detection', SIZE).push(1 as unknown as string)).toThrow(
      'StreamingOutputParser.push(chunk): expected a string but got 1',
    );
  });
});

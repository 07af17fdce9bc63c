// Predictions and results as plain JSON records for --json and --jsonl:
// pixel coordinates of the original image, rounded to 0.1 px.
import type { Prediction, XY } from '../../predictions.js';
import type { RexOmniResult } from '../../rex-omni.js';

const px = (v: number) => Math.round(v * 10) / 10;
const xy = ([x, y]: XY): [number, number] => [px(x), px(y)];

export type PredictionRecord = Record<string, unknown> & { kind: Prediction['kind']; phrase: string };

export function predictionRecord(prediction: Prediction): PredictionRecord {
  const score = prediction.score === undefined ? {} : { score: Math.round(prediction.score * 1e4) / 1e4 };
  switch (prediction.kind) {
    case 'box':
      return { kind: 'box', phrase: prediction.phrase, ...score, box: prediction.coords.map(px) };
    case 'point':
      return { kind: 'point', phrase: prediction.phrase, ...score, point: xy(prediction.coords) };
    case 'polygon':
      return { kind: 'polygon', phrase: prediction.phrase, ...score, polygon: prediction.coords.map(xy) };
    case 'keypoints':
      return {
        kind: 'keypoints',
        phrase: prediction.phrase,
        instance: prediction.instanceId,
        ...score,
        box: prediction.coords.map(px),
        keypoints: Object.fromEntries(Object.entries(prediction.keypoints).map(([name, kp]) => [name, kp ? xy(kp.coords) : null])),
      };
  }
}

/** What an image's run came to, without its predictions. */
export function resultRecord(result: RexOmniResult): Record<string, unknown> {
  const t = result.timings;
  const ms = (v: number | undefined) => (v === undefined ? null : Math.round(v * 10) / 10);
  return {
    width: result.image.width,
    height: result.image.height,
    predictions: result.predictions.length,
    complete: result.complete,
    finishReason: result.finishReason,
    tokens: result.tokens,
    timingsMs: {
      decodeImage: ms(t.decodeMs),
      preprocess: ms(t.preprocessMs),
      vision: ms(t.visionMs),
      prefill: ms(t.prefillMs),
      firstPrediction: ms(t.firstPredictionMs),
      decodeSteps: ms(t.decodeStepsMs),
      total: ms(t.totalMs),
    },
    decodeTokensPerSecond: Math.round(t.decodeTokensPerSecond * 10) / 10,
  };
}

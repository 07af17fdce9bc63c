// Confidence scores. The model gives none, so each prediction's score is
// derived from its coordinate tokens:
//
//   score = exp( mean over the prediction's coordinate tokens of log p(token) )
//
// the geometric mean of the probabilities the model gave the coordinate
// tokens it wrote (a box: 4 tokens, a point: 2, a polygon: all of them, a
// keypoint instance: its box and its visible keypoints). p is the model's own
// distribution at temperature 1, as reported by the engine for each token.
// A score is in (0, 1]; it ranks predictions (for AP) but is not calibrated.
import type { Prediction } from './predictions.js';

/** The bins of a prediction in the order the model wrote them. */
export function predictionBins(prediction: Prediction): number[] {
  switch (prediction.kind) {
    case 'box':
    case 'point':
      return [...prediction.bins];
    case 'polygon':
      return prediction.bins.flat();
    case 'keypoints': {
      const bins: number[] = [...prediction.bins];
      for (const keypoint of Object.values(prediction.keypoints)) if (keypoint) bins.push(...keypoint.bins);
      return bins;
    }
  }
}

/** Remembers the coordinate tokens written so far, to score each prediction as it completes. */
export class CoordinateScorer {
  readonly #bins: number[] = [];
  readonly #logprobs: number[] = [];

  /** A coordinate token was generated. */
  add(bin: number, logprob: number): void {
    this.#bins.push(bin);
    this.#logprobs.push(logprob);
  }

  /**
   * The score of a prediction that just completed: its coordinates are the
   * most recent coordinate tokens. Undefined when they are not (text that
   * spelled coordinates without coordinate tokens, in unconstrained mode).
   */
  score(prediction: Prediction): number | undefined {
    const bins = predictionBins(prediction);
    const start = this.#bins.length - bins.length;
    if (bins.length === 0 || start < 0) return undefined;
    let sum = 0;
    for (let i = 0; i < bins.length; ++i) {
      if (this.#bins[start + i] !== bins[i]) return undefined;
      sum += this.#logprobs[start + i]!;
    }
    return Math.exp(sum / bins.length);
  }
}

// The numbers of a whole run: images, predictions, failures and the mean
// wall time per image (model inference and drawing).
export interface RunSummary {
  images: number;
  succeeded: number;
  failed: number;
  predictions: number;
  meanMsPerImage: number;
}

export class SummaryCounter {
  #images = 0;
  #failed = 0;
  #predictions = 0;
  #totalMs = 0;

  add(outcome: { predictions?: number; ms: number; failed?: boolean }): void {
    this.#images++;
    this.#totalMs += outcome.ms;
    if (outcome.failed) this.#failed++;
    else this.#predictions += outcome.predictions ?? 0;
  }

  summary(): RunSummary {
    return {
      images: this.#images,
      succeeded: this.#images - this.#failed,
      failed: this.#failed,
      predictions: this.#predictions,
      meanMsPerImage: this.#images === 0 ? 0 : Math.round((this.#totalMs / this.#images) * 10) / 10,
    };
  }
}

export function summaryLine(s: RunSummary): string {
  const mean = s.meanMsPerImage >= 1000 ? `${(s.meanMsPerImage / 1000).toFixed(2)} s` : `${s.meanMsPerImage.toFixed(0)} ms`;
  return `${s.images} images · ${s.predictions} predictions · ${s.failed} failed · ${mean} per image`;
}

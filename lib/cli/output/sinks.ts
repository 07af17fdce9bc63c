// Where results go, by output format:
// - jsonl: one line per prediction the moment it is decoded, then one line per
//   image, per failure and for the summary; every line has a "type";
// - json: one document at the end: every image with its predictions, and the summary;
// - table: per image, a table and a timings line; a summary line after several images.
// Without --json or --jsonl, a terminal gets the table and a pipe gets JSONL.
import type { Prediction } from '../../predictions.js';
import type { RexOmniResult } from '../../rex-omni.js';
import { predictionRecord, resultRecord } from './records.js';
import { summaryLine, type RunSummary } from './summary.js';
import { predictionsTable, timingsLine } from './table.js';

export type OutputFormat = 'jsonl' | 'json' | 'table';

export function chooseFormat(flags: { json?: boolean; jsonl?: boolean }, stdoutIsTTY: boolean): OutputFormat {
  if (flags.json) return 'json';
  if (flags.jsonl) return 'jsonl';
  return stdoutIsTTY ? 'table' : 'jsonl';
}

export interface FailedImage {
  message: string;
  code?: string;
}

export interface OutputSink {
  prediction(image: string, prediction: Prediction): void;
  /** An earlier prediction withdrawn (unconstrained output only). */
  retract(image: string, prediction: Prediction): void;
  imageDone(image: string, result: RexOmniResult, drawn: string | undefined): void;
  imageFailed(image: string, failure: FailedImage): void;
  finish(summary: RunSummary): void;
}

export function createSink(format: OutputFormat, write: (text: string) => void): OutputSink {
  switch (format) {
    case 'jsonl':
      return new JsonlSink(write);
    case 'json':
      return new JsonSink(write);
    case 'table':
      return new TableSink(write);
  }
}

class JsonlSink implements OutputSink {
  constructor(private readonly write: (text: string) => void) {}
  #line(record: Record<string, unknown>): void {
    this.write(`${JSON.stringify(record)}\n`);
  }
  prediction(image: string, prediction: Prediction): void {
    this.#line({ type: 'prediction', image, ...predictionRecord(prediction) });
  }
  retract(image: string, prediction: Prediction): void {
    this.#line({ type: 'retract', image, ...predictionRecord(prediction) });
  }
  imageDone(image: string, result: RexOmniResult, drawn: string | undefined): void {
    this.#line({ type: 'image', image, ...resultRecord(result), ...(drawn ? { drawn } : {}) });
  }
  imageFailed(image: string, failure: FailedImage): void {
    this.#line({ type: 'error', image, ...failure });
  }
  finish(summary: RunSummary): void {
    this.#line({ type: 'summary', ...summary });
  }
}

class JsonSink implements OutputSink {
  readonly #images: Record<string, unknown>[] = [];
  constructor(private readonly write: (text: string) => void) {}
  prediction(): void {}
  retract(): void {}
  imageDone(image: string, result: RexOmniResult, drawn: string | undefined): void {
    this.#images.push({ image, ...resultRecord(result), ...(drawn ? { drawn } : {}), predictions: result.predictions.map(predictionRecord) });
  }
  imageFailed(image: string, failure: FailedImage): void {
    this.#images.push({ image, error: failure });
  }
  finish(summary: RunSummary): void {
    this.write(`${JSON.stringify({ images: this.#images, summary }, null, 2)}\n`);
  }
}

class TableSink implements OutputSink {
  #count = 0;
  constructor(private readonly write: (text: string) => void) {}
  prediction(): void {}
  retract(): void {}
  imageDone(image: string, result: RexOmniResult, drawn: string | undefined): void {
    this.#count++;
    const count = result.predictions.length;
    const lines = [`${image}: ${count} prediction${count === 1 ? '' : 's'}`, predictionsTable(result.predictions), timingsLine(result)];
    if (drawn) lines.push(`drawn: ${drawn}`);
    this.write(`${lines.join('\n')}\n\n`);
  }
  imageFailed(image: string, failure: FailedImage): void {
    this.#count++;
    this.write(`${image}: failed: ${failure.message}\n\n`);
  }
  finish(summary: RunSummary): void {
    if (this.#count > 1 || summary.failed > 0) this.write(`${summaryLine(summary)}\n`);
  }
}

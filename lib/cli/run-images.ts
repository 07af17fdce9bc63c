// Runs one task over a list of images with one loaded model: each image's
// predictions stream to the output sink as they are decoded, its picture is
// drawn when --out is given, and a failing image is reported and skipped.
// A bar shows progress on a terminal when there are several images. Returns
// the exit code: 0, or 3 when any image failed.
import { basename, extname, join } from 'node:path';

import { drawPredictions } from '../draw/render.js';
import { RexOmni, type LoadOptions, type RexOmniResult } from '../rex-omni.js';
import type { RunOptions } from '../run-options.js';
import type { TaskSpec } from '../tasks/index.js';
import { EXIT_OK, EXIT_SOME_IMAGES_FAILED } from './exit-codes.js';
import { createSink, type OutputFormat } from './output/sinks.js';
import { SummaryCounter } from './output/summary.js';
import { imageProgressBar, type ImageProgress } from './progress.js';

export interface ImageRun {
  images: readonly string[];
  task: TaskSpec;
  modelDir: string;
  loadOptions: LoadOptions;
  runOptions: RunOptions;
  format: OutputFormat;
  /** Folder for the drawn pictures. */
  out?: string;
  /** --verbose: say when the model is loaded, and how long it took. */
  verbose?: boolean;
}

export interface CliStreams {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

export async function runImages(run: ImageRun, io: CliStreams): Promise<number> {
  const loadStarted = performance.now();
  await using model = await RexOmni.load(run.modelDir, run.loadOptions);
  if (run.verbose) io.stderr.write(`rex-omni: loaded ${run.modelDir} on ${model.info().backend} in ${Math.round(performance.now() - loadStarted)} ms\n`);
  const progress: ImageProgress | undefined = run.images.length > 1 && io.stderr.isTTY ? imageProgressBar(run.images.length, io.stderr) : undefined;
  const write = (text: string) => void (progress ? progress.log(text, io.stdout) : io.stdout.write(text));
  const sink = createSink(run.format, write);
  const counter = new SummaryCounter();
  const outputNames = new OutputNames();
  try {
    for (const image of run.images) {
      const started = performance.now();
      try {
        let result: RexOmniResult | undefined;
        for await (const event of model.stream(image, run.task, run.runOptions)) {
          if (event.type === 'prediction') sink.prediction(image, event.prediction);
          else if (event.type === 'retract') sink.retract(image, event.prediction);
          else result = event.result;
        }
        if (!result) throw new Error('the run ended without a result');
        const drawn = run.out ? join(run.out, outputNames.next(image)) : undefined;
        if (drawn) await drawPredictions(image, result.predictions, drawn);
        sink.imageDone(image, result, drawn);
        counter.add({ predictions: result.predictions.length, ms: performance.now() - started });
      } catch (error) {
        const failure = describeFailure(error);
        const note = `rex-omni: skipped ${image}: ${failure.message}\n`;
        if (run.format !== 'table') void (progress ? progress.log(note, io.stderr) : io.stderr.write(note));
        sink.imageFailed(image, failure);
        counter.add({ ms: performance.now() - started, failed: true });
      }
      progress?.tick(basename(image));
    }
  } finally {
    progress?.stop();
  }
  const summary = counter.summary();
  sink.finish(summary);
  return summary.failed > 0 ? EXIT_SOME_IMAGES_FAILED : EXIT_OK;
}

function describeFailure(error: unknown): { message: string; code?: string } {
  if (!(error instanceof Error)) return { message: String(error) };
  const code = (error as { code?: unknown }).code;
  return { message: error.message, ...(typeof code === 'string' ? { code } : {}) };
}

/** Names for drawn pictures: the image's own name (PNG when sharp cannot write its format), made unique within the run. */
class OutputNames {
  readonly #used = new Set<string>();
  next(image: string): string {
    const extension = extname(image).toLowerCase();
    const stem = basename(image, extname(image));
    const kept = ['.jpg', '.jpeg', '.png', '.webp', '.avif', '.tiff', '.tif'].includes(extension) ? extension : '.png';
    let name = `${stem}${kept}`;
    for (let n = 2; this.#used.has(name); n++) name = `${stem}-${n}${kept}`;
    this.#used.add(name);
    return name;
  }
}

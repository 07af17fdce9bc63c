// Progress bars (cli-progress) on a terminal, and nothing but plain lines
// off one: a bar of images with their rate and ETA for folder runs, and a bar
// of bytes for model downloads. Bars draw on stderr; text that must appear
// while one is showing goes through `log`: the bar's line is cleared, the
// text written to its own stream, and the bar drawn again below it.
import cliProgress from 'cli-progress';

import type { DownloadProgress } from '../hub/download-model.js';

export interface ImageProgress {
  /** One image finished. */
  tick(image: string): void;
  /** Writes `text` to `to` above the bar (stdout and stderr are the same terminal). */
  log(text: string, to: NodeJS.WritableStream): void;
  stop(): void;
}

function bar(stream: NodeJS.WriteStream, format: string) {
  const multi = new cliProgress.MultiBar(
    { stream, format, hideCursor: true, clearOnComplete: false, etaBuffer: 20, fps: 5, barsize: 30 },
    cliProgress.Presets.shades_classic,
  );
  return multi;
}

/** A bar over `total` images: done/total, images per second, ETA and the last image. */
export function imageProgressBar(total: number, stream: NodeJS.WriteStream): ImageProgress {
  const multi = bar(stream, '{bar} {value}/{total} images | {rate} images/s | ETA {eta_formatted} | {image}');
  const started = performance.now();
  const single = multi.create(total, 0, { rate: '0.00', image: '' });
  let done = 0;
  return {
    tick(image) {
      done++;
      single.update(done, { rate: (done / ((performance.now() - started) / 1000)).toFixed(2), image });
      multi.update();
    },
    log(text, to) {
      if (multi.isActive) stream.write('\r\x1b[2K');
      to.write(text);
      if (multi.isActive) multi.update();
    },
    stop() {
      if (multi.isActive) multi.stop();
    },
  };
}

const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

/** Download progress: a bar of megabytes on a terminal, a line at the start and end otherwise. */
export function downloadProgress(repo: string, stream: NodeJS.WriteStream): DownloadProgress {
  if (!stream.isTTY) {
    let total = 0;
    return {
      start(totalBytes, files) {
        total = totalBytes;
        stream.write(`rex-omni: downloading ${repo}: ${files.length} files, ${mb(totalBytes)} MB\n`);
      },
      file() {},
      advance() {},
      stop(completed) {
        if (completed) stream.write(`rex-omni: ${repo}: ${mb(total)} MB in the cache\n`);
      },
    };
  }
  const multi = bar(stream, `${repo} {bar} {percentage}% | {done}/{size} MB | {speed} MB/s | ETA {eta_formatted} | {file}`);
  let single: cliProgress.SingleBar | undefined;
  let done = 0;
  let size = '0';
  let file = '';
  let started = 0;
  const payload = () => ({ done: mb(done), size, file, speed: mb(done / Math.max((performance.now() - started) / 1000, 1e-3)) });
  return {
    start(totalBytes) {
      size = mb(totalBytes);
      started = performance.now();
      single = multi.create(totalBytes, 0, payload());
    },
    file(path) {
      file = path;
      single?.update(done, payload());
    },
    advance(bytes) {
      done += bytes;
      single?.update(done, payload());
    },
    stop() {
      multi.stop();
    },
  };
}

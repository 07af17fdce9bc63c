// The terminal's view of a result: a table of predictions (phrase, score,
// kind, pixel coordinates) and one line of timings.
import type { Prediction, XY } from '../../predictions.js';
import type { RexOmniResult } from '../../rex-omni.js';
import { displayWidth } from '../../text-width.js';

const r = (v: number) => String(Math.round(v));
const pt = ([x, y]: XY) => `(${r(x)}, ${r(y)})`;

/** A prediction's coordinates in pixels, short enough for one table cell. */
export function coordinatesCell(prediction: Prediction): string {
  switch (prediction.kind) {
    case 'box':
      return `${pt([prediction.coords[0], prediction.coords[1]])} – ${pt([prediction.coords[2], prediction.coords[3]])}`;
    case 'point':
      return pt(prediction.coords);
    case 'polygon': {
      const shown = prediction.coords.slice(0, 3).map(pt).join(' ');
      return `${prediction.coords.length} vertices: ${shown}${prediction.coords.length > 3 ? ' …' : ''}`;
    }
    case 'keypoints': {
      const kps = Object.values(prediction.keypoints);
      const box = `${pt([prediction.coords[0], prediction.coords[1]])} – ${pt([prediction.coords[2], prediction.coords[3]])}`;
      return `${box}, ${kps.filter((kp) => kp !== null).length}/${kps.length} keypoints visible`;
    }
  }
}

/** Columns padded to their widest cell, a rule under the header. */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(displayWidth(h), ...rows.map((row) => displayWidth(row[i] ?? ''))));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => cell + ' '.repeat(widths[i]! - displayWidth(cell)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function predictionsTable(predictions: readonly Prediction[]): string {
  if (predictions.length === 0) return '  (no predictions)';
  const rows = predictions.map((p, i) => [
    String(i + 1),
    p.kind === 'keypoints' ? `${p.phrase} (${p.instanceId})` : p.phrase,
    p.score === undefined ? '' : p.score.toFixed(3),
    p.kind,
    coordinatesCell(p),
  ]);
  return renderTable(['#', 'phrase', 'score', 'kind', 'pixels (x, y)'], rows);
}

const ms = (v: number) => (v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v < 10 ? 1 : 0)} ms`);

/** "1440×810 · 106 prompt tokens (60 image) · 25 generated · vision 12 ms · …". */
export function timingsLine(result: RexOmniResult): string {
  const { image, tokens, timings: t } = result;
  return [
    `${image.width}×${image.height} (model saw ${image.resizedWidth}×${image.resizedHeight})`,
    `${tokens.prompt} prompt tokens (${tokens.image} image)`,
    `${tokens.generated} generated`,
    `vision ${ms(t.visionMs)}`,
    `prefill ${ms(t.prefillMs)}`,
    t.firstPredictionMs === undefined ? 'no prediction' : `first prediction ${ms(t.firstPredictionMs)}`,
    `${t.decodeTokensPerSecond.toFixed(0)} tokens/s`,
    `total ${ms(t.totalMs)}`,
  ].join(' · ');
}

// The SVG drawn over an image: every prediction's shape in its phrase's
// colour, each over a thin dark outline so it shows on light and dark pixels
// alike, then every label on top (a filled box with contrasting text, kept
// inside the image). Sizes scale with the image's shorter side.
import type { Prediction, XY, XYXY } from '../predictions.js';
import { phraseColour, textColourOn, toHex, type Rgb } from './colours.js';
import { labelSize, placeLabel, type ImageBounds, type LabelStyle, type PlacedLabel } from './labels.js';
import { limbsFor } from './skeletons.js';

export interface OverlayStyle extends LabelStyle {
  strokeWidth: number;
  pointRadius: number;
}

/** Line width, point radius and font size for an image of this size. */
export function overlayStyle(image: ImageBounds): OverlayStyle {
  const side = Math.min(image.width, image.height);
  const clamp = (value: number, low: number, high: number) => Math.max(low, Math.min(high, Math.round(value)));
  const fontSize = clamp(side / 28, 11, 32);
  return { strokeWidth: clamp(side / 220, 2, 8), pointRadius: clamp(side / 90, 4, 14), fontSize, padding: Math.max(2, Math.round(fontSize / 4)) };
}

/** The label text of a prediction: its phrase (or instance key) and its score. */
export function labelText(prediction: Prediction): string {
  const name = prediction.kind === 'keypoints' ? prediction.instanceId : prediction.phrase;
  const clean = name.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim() || prediction.kind;
  return prediction.score === undefined ? clean : `${clean} ${prediction.score.toFixed(2)}`;
}

const OUTLINE = '#000000';
const OUTLINE_OPACITY = 0.55;

export function overlaySvg(predictions: readonly Prediction[], image: ImageBounds, style: OverlayStyle = overlayStyle(image)): string {
  const shapes: string[] = [];
  const labels: string[] = [];
  for (const prediction of predictions) {
    const colour = phraseColour(prediction.phrase);
    shapes.push(shape(prediction, colour, style));
    labels.push(labelSvg(predictionLabel(prediction, image, style), colour));
  }
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${image.width}" height="${image.height}" viewBox="0 0 ${image.width} ${image.height}">` +
    `<g fill="none" stroke-linejoin="round" stroke-linecap="round">${shapes.join('')}</g>` +
    `<g font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="${style.fontSize}">${labels.join('')}</g></svg>`
  );
}

function shape(prediction: Prediction, colour: Rgb, style: OverlayStyle): string {
  switch (prediction.kind) {
    case 'box':
      return box(prediction.coords, colour, style.strokeWidth);
    case 'point':
      return point(prediction.coords, colour, style.pointRadius);
    case 'polygon':
      return polygon(prediction.coords, colour, style.strokeWidth);
    case 'keypoints': {
      const visible = Object.entries(prediction.keypoints).flatMap(([name, kp]) => (kp ? [[name, kp.coords] as const] : []));
      const at = new Map<string, XY>(visible);
      const limbs = limbsFor(Object.keys(prediction.keypoints))
        .filter(([a, b]) => at.has(a) && at.has(b))
        .map(([a, b]) => line(at.get(a)!, at.get(b)!, colour, style.strokeWidth));
      const dots = visible.map(([, xy]) => point(xy, colour, Math.max(2, Math.round(style.pointRadius * 0.6))));
      return box(prediction.coords, colour, style.strokeWidth) + limbs.join('') + dots.join('');
    }
  }
}

function outlined(element: string, attributes: string, colour: Rgb, width: number): string {
  return (
    `<${element} ${attributes} stroke="${OUTLINE}" stroke-opacity="${OUTLINE_OPACITY}" stroke-width="${width + 2}"/>` +
    `<${element} ${attributes} stroke="${toHex(colour)}" stroke-width="${width}"/>`
  );
}

function box([x0, y0, x1, y1]: XYXY, colour: Rgb, width: number): string {
  return outlined('rect', `x="${n(x0)}" y="${n(y0)}" width="${n(x1 - x0)}" height="${n(y1 - y0)}"`, colour, width);
}

function line([xa, ya]: XY, [xb, yb]: XY, colour: Rgb, width: number): string {
  return outlined('line', `x1="${n(xa)}" y1="${n(ya)}" x2="${n(xb)}" y2="${n(yb)}"`, colour, width);
}

function polygon(vertices: readonly XY[], colour: Rgb, width: number): string {
  const points = vertices.map(([x, y]) => `${n(x)},${n(y)}`).join(' ');
  return (
    `<polygon points="${points}" fill="${toHex(colour)}" fill-opacity="0.25" stroke="none"/>` + outlined('polygon', `points="${points}"`, colour, width)
  );
}

function point([x, y]: XY, colour: Rgb, radius: number): string {
  return (
    `<circle cx="${n(x)}" cy="${n(y)}" r="${radius + 2}" fill="#ffffff" stroke="${OUTLINE}" stroke-width="1"/>` +
    `<circle cx="${n(x)}" cy="${n(y)}" r="${radius}" fill="${toHex(colour)}" stroke="none"/>`
  );
}

/** Boxes: above the top-left corner, else just inside it. Points: right of the point, else left. Polygons: above the top vertex. */
export function predictionLabel(prediction: Prediction, image: ImageBounds, style: OverlayStyle = overlayStyle(image)): PlacedLabel {
  const text = labelText(prediction);
  const { width, height } = labelSize(text, style);
  const half = style.strokeWidth / 2;
  switch (prediction.kind) {
    case 'box':
    case 'keypoints': {
      const [x0, y0] = prediction.coords;
      return placeLabel(text, { x: x0 - half, y: y0 - half - height }, image, style, { x: x0 - half, y: y0 + half });
    }
    case 'point': {
      const [x, y] = prediction.coords;
      const gap = style.pointRadius + 4;
      return placeLabel(text, { x: x + gap, y: y - height / 2 }, image, style, { x: x - gap - width, y: y - height / 2 });
    }
    case 'polygon': {
      const top = prediction.coords.reduce((best, v) => (v[1] < best[1] ? v : best), prediction.coords[0]!);
      return placeLabel(text, { x: top[0], y: top[1] - half - height }, image, style, { x: top[0], y: top[1] + half });
    }
  }
}

function labelSvg(label: PlacedLabel, colour: Rgb): string {
  return (
    `<rect x="${n(label.x)}" y="${n(label.y)}" width="${n(label.width)}" height="${n(label.height)}" fill="${toHex(colour)}" ` +
    `stroke="${OUTLINE}" stroke-opacity="${OUTLINE_OPACITY}" stroke-width="1"/>` +
    `<text x="${n(label.textX)}" y="${n(label.textY)}" fill="${toHex(textColourOn(colour))}">${escapeXml(label.text)}</text>`
  );
}

/** A coordinate for SVG: two decimals at most. */
function n(value: number): string {
  return String(Math.round(value * 100) / 100);
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

// Parsers for option values. A bad value throws commander's
// InvalidArgumentError, so commander reports it with the command's usage.
import { InvalidArgumentError } from 'commander';

import type { PixelBox } from '../tasks/index.js';

export function positiveInteger(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n <= 0) {
    throw new InvalidArgumentError(`expected a positive integer but got ${JSON.stringify(value)}`);
  }
  return n;
}

/** "a,b , c" → ["a", "b", "c"]. */
export function commaList(value: string): string[] {
  const items = value.split(',').map((item) => item.trim()).filter((item) => item.length > 0);
  if (items.length === 0) throw new InvalidArgumentError(`expected a comma-separated list such as "person,cup" but got ${JSON.stringify(value)}`);
  return items;
}

/** "x0,y0,x1,y1;x0,y0,x1,y1" → pixel boxes. */
export function boxList(value: string): PixelBox[] {
  const boxes = value.split(';').map((part) => part.trim()).filter((part) => part.length > 0);
  if (boxes.length === 0) throw new InvalidArgumentError(`expected boxes "x0,y0,x1,y1;…" in pixels but got ${JSON.stringify(value)}`);
  return boxes.map((box) => {
    const numbers = box.split(',').map((v) => v.trim());
    if (numbers.length !== 4 || numbers.some((v) => v === '' || !Number.isFinite(Number(v)))) {
      throw new InvalidArgumentError(`expected a box of 4 numbers x0,y0,x1,y1 but got ${JSON.stringify(box)}`);
    }
    const [x0, y0, x1, y1] = numbers.map(Number) as [number, number, number, number];
    if (x1 < x0 || y1 < y0) throw new InvalidArgumentError(`expected x0 <= x1 and y0 <= y1 but got ${JSON.stringify(box)}`);
    return [x0, y0, x1, y1];
  });
}

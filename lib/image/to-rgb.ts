// Interleaved 8-bit pixels (gray, gray+alpha, RGB, RGBA) to 8-bit RGB, with
// alpha composited onto white exactly as qwen_vl_utils does it: Pillow's
// paste(image, mask=alpha) onto a white RGB image, whose blend is
// DIV255(white·(255 − a) + c·a) with DIV255(x) = ((x + 128) + ((x + 128) >> 8)) >> 8.

/** One channel over white with Pillow's rounding. */
export function blendOntoWhite(value: number, alpha: number): number {
  const t = 255 * (255 - alpha) + value * alpha + 128;
  return ((t >> 8) + t) >> 8;
}

/** Converts `pixels` interleaved pixels of `channels` 8-bit channels to RGB (always a new buffer). */
export function toRgb(data: Uint8Array, pixels: number, channels: number): Buffer {
  if (channels === 3) return Buffer.from(data.subarray(0, pixels * 3));
  const out = Buffer.allocUnsafe(pixels * 3);
  for (let i = 0, o = 0, s = 0; i < pixels; i++, o += 3, s += channels) {
    if (channels === 4) {
      const a = data[s + 3];
      out[o] = blendOntoWhite(data[s], a);
      out[o + 1] = blendOntoWhite(data[s + 1], a);
      out[o + 2] = blendOntoWhite(data[s + 2], a);
    } else {
      const v = channels === 2 ? blendOntoWhite(data[s], data[s + 1]) : data[s];
      out[o] = v;
      out[o + 1] = v;
      out[o + 2] = v;
    }
  }
  return out;
}

// The errors loadImage raises for bad images, each a TypeError or RangeError
// with a stable code and an "expected … but got …" message.
const WHAT = 'loadImage(input)';
const FORMATS = 'a JPEG, PNG, WebP, AVIF, TIFF or GIF image';

function withCode<E extends Error>(error: E, code: string, cause?: unknown): E {
  if (cause !== undefined) (error as Error & { cause?: unknown }).cause = cause;
  return Object.assign(error, { code });
}

/** Bytes that are not an image (or no bytes at all): ERR_REX_IMAGE_FORMAT. */
export function notAnImage(bytes: Uint8Array, cause?: unknown): TypeError {
  const head = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
  const got = bytes.length === 0 ? '0 bytes' : `${bytes.length} bytes in no format sharp can decode (starting ${head})`;
  return withCode(new TypeError(`${WHAT}: expected the bytes of ${FORMATS} but got ${got}`), 'ERR_REX_IMAGE_FORMAT', cause);
}

/** A recognised image that does not decode: ERR_REX_IMAGE_CORRUPT. */
export function corruptImage(format: string, reason: string, cause?: unknown): TypeError {
  const first = reason.split('\n')[0].trim();
  return withCode(
    new TypeError(`${WHAT}: expected a complete ${format} image but got a truncated or corrupt one (${first})`),
    'ERR_REX_IMAGE_CORRUPT',
    cause,
  );
}

/** An image with no pixels: ERR_REX_IMAGE_EMPTY. */
export function emptyImage(width: number, height: number): RangeError {
  return withCode(
    new RangeError(`${WHAT}: expected an image of at least 1x1 pixels but got ${width}x${height}`),
    'ERR_REX_IMAGE_EMPTY',
  );
}

/** An image over the configured pixel limit: ERR_REX_IMAGE_TOO_LARGE. */
export function imageTooLarge(width: number, height: number, limit: number): RangeError {
  return withCode(
    new RangeError(
      `${WHAT}: expected at most ${limit} pixels (maxInputPixels) but got ${width}x${height} = ${width * height}`,
    ),
    'ERR_REX_IMAGE_TOO_LARGE',
  );
}

// Image decoding for Rex-Omni.
export { loadImage } from './load.js';
export { toRgb, blendOntoWhite } from './to-rgb.js';
export { DEFAULT_MAX_INPUT_PIXELS } from './types.js';
export type { DecodedImage, ImageInput, LoadImageOptions, RawImage } from './types.js';

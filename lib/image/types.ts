// The image inputs loadImage accepts and what it returns.
import type { Sharp } from 'sharp';

/** Undecoded pixels: interleaved 8-bit, row-major; channels 1 (gray), 2 (gray+alpha), 3 (RGB, default) or 4 (RGBA). */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels?: 1 | 2 | 3 | 4;
}

/**
 * A file path; the bytes of a JPEG, PNG, WebP, AVIF, TIFF or GIF (first frame)
 * file; raw pixels; or a sharp instance (cloned, so it can be reused).
 */
export type ImageInput = string | Buffer | Uint8Array | ArrayBuffer | RawImage | Sharp;

export interface LoadImageOptions {
  /** Rotate / flip by the EXIF Orientation tag, as browsers do. Default true (the reference does not). */
  applyExif?: boolean;
  /** Refuse images with more pixels than this (checked before decoding). Default 178956970, Pillow's limit. */
  maxInputPixels?: number;
}

export interface DecodedImage {
  /** Interleaved 8-bit RGB, row-major, width·height·3 bytes; alpha composited onto white. */
  rgb: Buffer;
  /** Size after EXIF orientation (when applied): the size predictions are mapped to. */
  width: number;
  height: number;
  source: {
    /** 'jpeg' | 'png' | 'webp' | 'avif' | 'heif' | 'tiff' | 'gif' | … | 'raw'. */
    format: string;
    /** The EXIF Orientation tag (1…8), or null when absent. */
    orientation: number | null;
    /** Whether the orientation was applied to the pixels. */
    orientationApplied: boolean;
    /** Whether the source had alpha (then composited onto white). */
    hasAlpha: boolean;
  };
}

/** Pillow's decompression-bomb limit (2 × Image.MAX_IMAGE_PIXELS). */
export const DEFAULT_MAX_INPUT_PIXELS = 178_956_970;

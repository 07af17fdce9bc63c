// The three body formats. Parsing is Fastify's: its JSON parser, a buffer
// content-type parser for raw image bytes, and @fastify/multipart (fields
// and files attached to the body). Here each parsed body becomes the same
// thing: image bytes and the request's fields.
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyRequest } from 'fastify';

import { HttpError } from './errors.js';
import { RAW_IMAGE_TYPES } from './schemas.js';
import type { RequestFields } from './tasks.js';

export type BodyFormat = 'raw' | 'multipart' | 'json';

export interface ParsedBody {
  format: BodyFormat;
  images: Buffer[];
  fields: RequestFields & { task?: string };
}

export async function registerBodyParsers(app: FastifyInstance, limits: { maxBodyBytes: number; maxBatchImages: number }): Promise<void> {
  for (const type of RAW_IMAGE_TYPES)
    app.addContentTypeParser(type.endsWith('/*') ? new RegExp(`^${type.slice(0, -1)}`) : type, { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
  await app.register(multipart, {
    attachFieldsToBody: 'keyValues',
    limits: { fileSize: limits.maxBodyBytes, files: limits.maxBatchImages, fieldSize: 64 * 1024, fields: 64, parts: limits.maxBatchImages + 64 },
  });
}

const invalid = (message: string) => new HttpError(400, 'ERR_REX_INVALID_REQUEST', message);

/** "a,b , c" (or several such) → ["a", "b", "c"]. */
function commaList(value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  const parts = (Array.isArray(value) ? value : [value]).flatMap((v) => String(v).split(','));
  return parts.map((p) => p.trim()).filter((p) => p.length > 0);
}

/** "x0,y0,x1,y1;x0,y0,x1,y1" → boxes. */
function boxList(value: unknown): [number, number, number, number][] | undefined {
  if (value === undefined) return undefined;
  return String(value)
    .split(';')
    .map((b) => b.trim())
    .filter((b) => b.length > 0)
    .map((b) => {
      const numbers = b.split(',').map((v) => v.trim());
      if (numbers.length !== 4 || numbers.some((v) => v === '' || !Number.isFinite(Number(v))))
        throw invalid(`boxes: expected "x0,y0,x1,y1;…" with 4 numbers per box but got ${JSON.stringify(b)}`);
      return numbers.map(Number) as [number, number, number, number];
    });
}

/** Fields that arrived as text (query string, multipart): lists split. */
function textFields(raw: Record<string, unknown>): ParsedBody['fields'] {
  const fields: Record<string, unknown> = { ...raw };
  delete fields.image;
  if ('categories' in fields) fields.categories = commaList(fields.categories);
  if ('boxes' in fields) fields.boxes = boxList(fields.boxes);
  return fields as ParsedBody['fields'];
}

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** A JSON image field: base64, or a data URL. */
function decodeImageText(text: string, what: string): Buffer {
  let payload = text;
  if (text.startsWith('data:')) {
    const comma = text.indexOf(',');
    if (comma < 0 || !/;base64$/i.test(text.slice(0, comma)))
      throw new HttpError(400, 'ERR_REX_IMAGE_ENCODING', `${what}: expected a base64 data URL (data:image/…;base64,…) but got ${JSON.stringify(text.slice(0, 40))}`);
    payload = text.slice(comma + 1);
  }
  payload = payload.replace(/\s+/g, '');
  if (!BASE64.test(payload)) throw new HttpError(400, 'ERR_REX_IMAGE_ENCODING', `${what}: expected base64 text but got characters outside the base64 alphabet`);
  return Buffer.from(payload, 'base64');
}

/** The request's image(s) and fields, whatever the format. `many`: the batch route. */
export function readBody(request: FastifyRequest, many: boolean): ParsedBody {
  const query = textFields((request.query ?? {}) as Record<string, unknown>);
  const body = request.body;
  if (Buffer.isBuffer(body)) {
    if (many) throw new HttpError(415, 'ERR_REX_UNSUPPORTED_MEDIA_TYPE', 'POST /v1/batch takes JSON or multipart/form-data, not raw image bytes');
    return { format: 'raw', images: [body], fields: query };
  }
  if (body === undefined || body === null || typeof body !== 'object')
    throw new HttpError(415, 'ERR_REX_UNSUPPORTED_MEDIA_TYPE', 'expected an image body (image/*, application/octet-stream), multipart/form-data or JSON');
  const record = body as Record<string, unknown>;
  if (request.isMultipart()) {
    const parts = record.image === undefined ? [] : Array.isArray(record.image) ? record.image : [record.image];
    if (!parts.every((p) => Buffer.isBuffer(p))) throw invalid('image: expected file parts but got a text field');
    if (!many && parts.length !== 1) throw invalid(`image: expected one file part but got ${parts.length}`);
    return { format: 'multipart', images: parts as Buffer[], fields: { ...query, ...textFields(record) } };
  }
  const { image, images, ...fields } = record;
  const texts = many ? (images as string[]) : [image as string];
  return {
    format: 'json',
    images: texts.map((t, i) => decodeImageText(t, many ? `images[${i}]` : 'image')),
    fields: { ...query, ...(fields as ParsedBody['fields']) },
  };
}

// Every error the server answers is a JSON body { code, message } with a
// stable code. httpErrorOf maps what can go wrong (the server's own limits,
// Fastify's parsing and validation, the model's RexOmniErrors, bad task
// arguments) to an HttpError: its status, code and extra headers.
import { RexOmniError } from '../errors.js';

export class HttpError extends RexOmniError {
  readonly statusCode: number;
  readonly headers: Record<string, string>;
  constructor(statusCode: number, code: string, message: string, options: { cause?: unknown; headers?: Record<string, string> } = {}) {
    super(code, message, { cause: options.cause });
    this.name = 'HttpError';
    this.statusCode = statusCode;
    this.headers = options.headers ?? {};
  }
}

export interface ErrorBody {
  code: string;
  message: string;
}

// The model's codes that are the client's request, not the server's fault.
const MODEL_STATUS: Record<string, number> = {
  ERR_REX_IMAGE_FORMAT: 415,
  ERR_REX_IMAGE_CORRUPT: 400,
  ERR_REX_IMAGE_EMPTY: 400,
  ERR_REX_IMAGE_TOO_LARGE: 413,
  ERR_REX_DEADLINE: 504,
  ERR_REX_QUEUE_FULL: 503,
  ERR_REX_CANCELLED: 499,
  ERR_REX_SHUTTING_DOWN: 503,
};

// Fastify's and @fastify/multipart's error codes.
const FASTIFY: Record<string, [number, string]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'ERR_REX_BODY_TOO_LARGE'],
  FST_REQ_FILE_TOO_LARGE: [413, 'ERR_REX_BODY_TOO_LARGE'],
  FST_PARTS_LIMIT: [413, 'ERR_REX_BODY_TOO_LARGE'],
  FST_FIELDS_LIMIT: [413, 'ERR_REX_BODY_TOO_LARGE'],
  FST_FILES_LIMIT: [400, 'ERR_REX_TOO_MANY_IMAGES'],
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'ERR_REX_BAD_JSON'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'ERR_REX_BAD_JSON'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'ERR_REX_UNSUPPORTED_MEDIA_TYPE'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'ERR_REX_BAD_REQUEST'],
  FST_INVALID_MULTIPART_CONTENT_TYPE: [415, 'ERR_REX_UNSUPPORTED_MEDIA_TYPE'],
  FST_PROTO_VIOLATION: [400, 'ERR_REX_INVALID_REQUEST'],
};

/** What any thrown value becomes on the wire. */
export function httpErrorOf(error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  const e = error as { code?: unknown; statusCode?: unknown; validation?: unknown; message?: unknown; name?: unknown } | null;
  const message = typeof e?.message === 'string' ? e.message : String(error);
  const code = typeof e?.code === 'string' ? e.code : undefined;
  if (code && FASTIFY[code]) {
    const [status, ours] = FASTIFY[code];
    return new HttpError(status, ours, message, { cause: error });
  }
  if (e?.validation) return new HttpError(400, 'ERR_REX_INVALID_REQUEST', message, { cause: error });
  if (code && MODEL_STATUS[code]) return new HttpError(MODEL_STATUS[code], code, message, { cause: error });
  // Bad task arguments from lib/tasks and lib/run-options: "… expected … but got …".
  if ((error instanceof TypeError || error instanceof RangeError) && (code === 'ERR_INVALID_ARG_TYPE' || code === 'ERR_OUT_OF_RANGE'))
    return new HttpError(400, 'ERR_REX_INVALID_REQUEST', message, { cause: error });
  if (e?.name === 'TimeoutError') return new HttpError(504, 'ERR_REX_DEADLINE', message, { cause: error });
  if (e?.name === 'AbortError') return new HttpError(499, 'ERR_REX_CANCELLED', message, { cause: error });
  const status = typeof e?.statusCode === 'number' ? e.statusCode : 500;
  if (status >= 400 && status < 500) return new HttpError(status, status === 404 ? 'ERR_REX_NOT_FOUND' : 'ERR_REX_BAD_REQUEST', message, { cause: error });
  if (code?.startsWith('ERR_REX_')) return new HttpError(500, code, message, { cause: error });
  return new HttpError(500, 'ERR_REX_INTERNAL', message, { cause: error });
}

export function errorBody(error: HttpError): ErrorBody {
  return { code: error.code, message: error.message };
}

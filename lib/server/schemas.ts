// The routes' JSON Schemas, per body format: JSON (the image in base64 or as
// a data URL), multipart (the image as a file part, fields as text parts)
// and the query string (the fields that go with a raw image body). Fastify
// validates with them (Ajv, coercing text to numbers, booleans and arrays)
// and @fastify/swagger turns them into /openapi.json.
import { RUN_FIELDS, TASK_ROUTE_NAMES, TASK_ROUTES, type JsonSchema, type TaskRoute } from './tasks.js';

export const JSON_TYPE = 'application/json';
export const MULTIPART_TYPE = 'multipart/form-data';
/** Raw image bodies: any image/* type, or application/octet-stream. */
export const RAW_IMAGE_TYPES = ['application/octet-stream', 'image/*'];

const IMAGE_BASE64: JsonSchema = {
  type: 'string',
  minLength: 1,
  description: 'the image file (JPEG, PNG, WebP, AVIF, TIFF or GIF) in base64, or as a data URL (data:image/png;base64,…)',
};
const IMAGE_FILE: JsonSchema = { description: 'the image file, as a file part' };

/** A field as it arrives in text (query string, multipart): boxes as "x0,y0,x1,y1;…". */
function textField(name: string, schema: JsonSchema): JsonSchema {
  if (name === 'boxes') return { type: 'string', description: schema.description };
  return schema;
}

function textFields(fields: Record<string, JsonSchema>): Record<string, JsonSchema> {
  return Object.fromEntries(Object.entries(fields).map(([name, schema]) => [name, textField(name, schema)]));
}

function object(properties: Record<string, JsonSchema>, required: string[] = []): JsonSchema {
  return { type: 'object', properties, additionalProperties: false, ...(required.length ? { required } : {}) };
}

/** Every task's fields together (for the batch route, whose task is a field). */
const ALL_TASK_FIELDS: Record<string, JsonSchema> = Object.assign({}, ...TASK_ROUTES.map((r) => r.fields));

const TASK_FIELD: JsonSchema = { type: 'string', description: `the task: one of ${TASK_ROUTE_NAMES.join(', ')}` };

export const ERROR_SCHEMA: JsonSchema = {
  type: 'object',
  required: ['code', 'message'],
  properties: { code: { type: 'string' }, message: { type: 'string' } },
};

const RESULT_DESCRIPTION =
  'application/json: the result ({ predictions, groups, text, tokens, timings, image, … }). ' +
  'application/x-ndjson: one JSON line per event ({"type":"prediction"}, {"type":"retract"}), then {"type":"done","result"} (or {"type":"error","code","message"}). ' +
  'text/event-stream: the same events as server-sent events (event: prediction | retract | done | error).';

const ERRORS: Record<number, JsonSchema> = Object.fromEntries(
  [
    [400, 'bad input: invalid JSON or fields, a corrupt image, a limit exceeded'],
    [401, 'a missing or wrong bearer token'],
    [406, 'no acceptable response type'],
    [413, 'the body or the image is too large'],
    [415, 'an unsupported body type or image format'],
    [503, 'the queue is full (with Retry-After), or the model is not ready'],
    [504, 'the deadline passed'],
  ].map(([status, description]) => [status, { description, ...ERROR_SCHEMA }]),
);

const RESPONSES = { 200: { description: RESULT_DESCRIPTION, type: 'object', additionalProperties: true }, ...ERRORS };

export function taskRouteSchema(route: TaskRoute): JsonSchema {
  const fields = { ...route.fields, ...RUN_FIELDS };
  return {
    summary: route.summary,
    description:
      `Runs ${route.task} on one image. The body is the image's bytes (image/* or application/octet-stream, fields in the query string), ` +
      'multipart/form-data (an "image" file part and text fields), or JSON (the image in base64 or as a data URL). The Accept header picks the response.',
    tags: ['tasks'],
    querystring: object(textFields(fields)),
    body: {
      content: {
        [JSON_TYPE]: { schema: object({ image: IMAGE_BASE64, ...fields }, ['image']) },
        [MULTIPART_TYPE]: { schema: object({ image: IMAGE_FILE, ...textFields(fields) }, ['image']) },
      },
    },
    response: RESPONSES,
  };
}

export function batchRouteSchema(): JsonSchema {
  const fields = { ...ALL_TASK_FIELDS, ...RUN_FIELDS };
  return {
    summary: 'Many images, one task; results stream as each finishes',
    description:
      'JSON ({ task, images: [base64 or data URL, …], …fields }) or multipart/form-data (a "task" field, one "image" file part per image, text fields). ' +
      'application/json answers { results: [{ index, result } | { index, error }], summary } at the end; application/x-ndjson and text/event-stream ' +
      'send {"type":"result","index","result"} or {"type":"error","index","code","message"} as each image finishes, then {"type":"summary"}.',
    tags: ['tasks'],
    querystring: object(textFields(fields)),
    body: {
      content: {
        [JSON_TYPE]: { schema: object({ task: TASK_FIELD, images: { type: 'array', items: IMAGE_BASE64, minItems: 1 }, ...fields }, ['task', 'images']) },
        [MULTIPART_TYPE]: { schema: object({ task: TASK_FIELD, image: { description: 'one file part per image' }, ...textFields(fields) }, ['task', 'image']) },
      },
    },
    response: { 200: { description: 'per image, as each finishes; then a summary', type: 'object', additionalProperties: true }, ...ERRORS },
  };
}

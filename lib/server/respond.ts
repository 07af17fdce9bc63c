// The response formats the Accept header picks: application/json (the whole
// result at the end), application/x-ndjson (one JSON line per event as it
// happens) and text/event-stream (the same events as server-sent events).
import { Readable } from 'node:stream';

import type { FastifyReply, FastifyRequest } from 'fastify';

import { HttpError } from './errors.js';

export const RESPONSE_TYPES = ['application/json', 'application/x-ndjson', 'text/event-stream'] as const;
export type ResponseType = (typeof RESPONSE_TYPES)[number];

/** An event of a streamed response: its name (SSE's `event:`) and data (also carrying `type` in NDJSON). */
export interface StreamEvent {
  type: string;
  [key: string]: unknown;
}

/** The response type the request's Accept header prefers (JSON when it has none). */
export function negotiate(request: FastifyRequest): ResponseType {
  const chosen = request.type([...RESPONSE_TYPES]);
  if (typeof chosen !== 'string')
    throw new HttpError(406, 'ERR_REX_NOT_ACCEPTABLE', `expected an Accept header allowing one of ${RESPONSE_TYPES.join(', ')} but got ${JSON.stringify(request.headers.accept)}`);
  return chosen as ResponseType;
}

function frame(type: ResponseType, event: StreamEvent): string {
  const json = JSON.stringify(event);
  return type === 'text/event-stream' ? `event: ${event.type}\ndata: ${json}\n\n` : `${json}\n`;
}

/**
 * Sends `events` as NDJSON or SSE, each as soon as it comes. The status is
 * 200 from the first byte: a failure after that is an `error` event. SSE
 * opens with a comment line, so the headers leave at once.
 */
export function sendStream(reply: FastifyReply, type: Exclude<ResponseType, 'application/json'>, events: AsyncIterable<StreamEvent>): FastifyReply {
  async function* frames(): AsyncGenerator<string> {
    if (type === 'text/event-stream') yield ': rex-omni\n\n';
    for await (const event of events) yield frame(type, event);
  }
  reply.header('content-type', type === 'text/event-stream' ? 'text/event-stream; charset=utf-8' : 'application/x-ndjson; charset=utf-8');
  reply.header('cache-control', 'no-cache');
  reply.header('x-accel-buffering', 'no');
  return reply.send(Readable.from(frames(), { objectMode: false }));
}

// The optional bearer token, compared in constant time (SHA-256 digests of
// equal length through crypto.timingSafeEqual, so neither the content nor
// the length of the token leaks through timing), and the refusal to listen
// beyond loopback without one.
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';

import type { FastifyInstance } from 'fastify';

import { RexOmniError } from '../errors.js';
import { HttpError } from './errors.js';

/** Paths that answer without a token: the orchestrator's probes. */
export const PUBLIC_PATHS = new Set(['/healthz', '/readyz']);

const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();

export function tokenMatches(given: string, expected: Buffer): boolean {
  return timingSafeEqual(digest(given), expected);
}

export function addBearerAuth(app: FastifyInstance, token: string): void {
  const expected = digest(token);
  app.addHook('onRequest', async (request) => {
    if (request.method === 'OPTIONS' || PUBLIC_PATHS.has(request.url.split('?')[0]!)) return;
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header) : null;
    if (!match)
      throw new HttpError(401, 'ERR_REX_UNAUTHORIZED', 'expected an Authorization: Bearer <token> header but got none', {
        headers: { 'www-authenticate': 'Bearer realm="rex-omni"' },
      });
    if (!tokenMatches(match[1]!, expected))
      throw new HttpError(401, 'ERR_REX_UNAUTHORIZED', 'the bearer token is wrong', {
        headers: { 'www-authenticate': 'Bearer realm="rex-omni", error="invalid_token"' },
      });
  });
}

/** Whether `host` is a loopback address (or "localhost"). */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (h.startsWith('::ffff:')) return isLoopback(h.slice(7));
  return h === '::1';
}

export function checkBindAllowed(host: string, hasToken: boolean, insecurePublic: boolean): void {
  if (hasToken || insecurePublic || isLoopback(host)) return;
  throw new RexOmniError(
    'ERR_REX_INSECURE_PUBLIC',
    `refusing to listen on ${host} without a token: set --token or REX_OMNI_TOKEN, listen on loopback (127.0.0.1), or pass --insecure-public`,
  );
}

// The hub's failures as RexOmniErrors with one-line messages a user can act
// on: no network, a download cut off (run again to resume), a file that does
// not match the hub's size or hash, a repository or file the hub does not have.
import { HubApiError } from '@huggingface/hub';

import { RexOmniError } from '../errors.js';

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
]);

/** The first network error code in `error`'s cause chain, or undefined. */
export function networkErrorCode(error: unknown): string | undefined {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return code;
  }
  return undefined;
}

/** The innermost message of `error`'s cause chain. */
export function rootMessage(error: unknown): string {
  let e = error;
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  return e instanceof Error ? e.message : String(e);
}

const LOCAL_HINT = 'point --model at a local folder that holds the checkpoint (config.json, *.safetensors, tokenizer.json)';

export function hubUnreachable(repo: string, hubUrl: string, reason: string): RexOmniError {
  return new RexOmniError('ERR_REX_HUB_UNREACHABLE', `cannot download ${repo}: no connection to ${hubUrl} (${reason}); without a network, ${LOCAL_HINT}`);
}

export function hubOffline(repo: string): RexOmniError {
  return new RexOmniError('ERR_REX_HUB_UNREACHABLE', `cannot download ${repo}: HF_HUB_OFFLINE is set and it is not in the cache; ${LOCAL_HINT}`);
}

const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

export function downloadInterrupted(repo: string, file: string, done: number, total: number, cause: unknown): RexOmniError {
  return new RexOmniError(
    'ERR_REX_DOWNLOAD_INTERRUPTED',
    `the download of ${repo} stopped in ${file} at ${mb(done)} of ${mb(total)} MB (${rootMessage(cause)}); run the same command again to resume`,
    { cause },
  );
}

export function downloadCorrupt(repo: string, file: string, what: string, expected: string, got: string): RexOmniError {
  return new RexOmniError(
    'ERR_REX_DOWNLOAD_CORRUPT',
    `${repo}: ${file} does not match the hub's ${what} (expected ${expected} but got ${got}); the partial file was removed, run the command again`,
  );
}

/** A failure of a hub API call, as a RexOmniError. */
export function hubRequestFailed(repo: string, hubUrl: string, error: unknown): RexOmniError {
  if (networkErrorCode(error)) return hubUnreachable(repo, hubUrl, rootMessage(error));
  if (error instanceof HubApiError && (error.statusCode === 404 || error.statusCode === 401)) {
    return new RexOmniError('ERR_REX_NOT_FOUND', `the hub at ${hubUrl} has no model ${repo} (HTTP ${error.statusCode}; a private model needs HF_TOKEN)`, { cause: error });
  }
  return new RexOmniError('ERR_REX_HUB', `${repo}: the hub at ${hubUrl} failed: ${rootMessage(error)}`, { cause: error });
}

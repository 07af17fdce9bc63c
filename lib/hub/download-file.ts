// Downloads one file of a hub repository with resume and verification.
//
// Bytes go to "<dest>.part". A later call continues from the part's length
// (an HTTP range request through @huggingface/hub's blob slicing), after
// hashing the bytes already there. When the file is whole it is checked
// against the hub's size and, where the hub gives them, the LFS sha256 or the
// git blob id (sha1 of "blob <size>\0" + content), and only then renamed to
// <dest>. A mismatch removes the part so the next run starts clean.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { downloadFile } from '@huggingface/hub';

import { RexOmniError } from '../errors.js';
import { downloadCorrupt, downloadInterrupted, hubRequestFailed } from './hub-errors.js';

export interface RemoteFile {
  path: string;
  size: number;
  /** The LFS object id: the sha256 of the content. */
  sha256?: string;
  /** The git blob id of a non-LFS file. */
  gitOid?: string;
}

export interface HubSource {
  repo: string;
  revision: string;
  hubUrl: string;
  accessToken?: string;
  fetch?: typeof fetch;
}

/** Downloads `file` to `dest`; `onBytes` hears of every byte that is there, resumed ones first. */
export async function downloadHubFile(source: HubSource, file: RemoteFile, dest: string, onBytes: (bytes: number) => void): Promise<void> {
  const part = `${dest}.part`;
  let offset = (await fileSize(part)) ?? 0;
  if (offset > file.size) {
    await rm(part, { force: true });
    offset = 0;
  }
  const sha256 = createHash('sha256');
  const gitSha1 = createHash('sha1').update(`blob ${file.size}\0`);
  if (offset > 0) {
    for await (const chunk of createReadStream(part)) update([sha256, gitSha1], chunk as Buffer);
    onBytes(offset);
  }
  if (offset < file.size) await appendRemote(source, file, part, offset, [sha256, gitSha1], onBytes);

  const size = (await fileSize(part)) ?? 0;
  const corrupt = (what: string, expected: string, got: string) => {
    return rm(part, { force: true }).then(() => {
      throw downloadCorrupt(source.repo, file.path, what, expected, got);
    });
  };
  if (size !== file.size) await corrupt('size', `${file.size} bytes`, `${size}`);
  if (file.sha256) {
    const got = sha256.digest('hex');
    if (got !== file.sha256) await corrupt('sha256', file.sha256, got);
  } else if (file.gitOid) {
    const got = gitSha1.digest('hex');
    if (got !== file.gitOid) await corrupt('git blob id', file.gitOid, got);
  }
  await rename(part, dest);
}

async function appendRemote(source: HubSource, file: RemoteFile, part: string, offset: number, hashes: Hash[], onBytes: (bytes: number) => void): Promise<void> {
  let blob: Blob | null;
  try {
    blob = await downloadFile({
      repo: { type: 'model', name: source.repo },
      path: file.path,
      revision: source.revision,
      hubUrl: source.hubUrl,
      ...(source.accessToken ? { accessToken: source.accessToken } : {}),
      ...(source.fetch ? { fetch: source.fetch } : {}),
    });
  } catch (error) {
    throw hubRequestFailed(source.repo, source.hubUrl, error);
  }
  if (!blob) throw new RexOmniError('ERR_REX_NOT_FOUND', `${source.repo} has no file ${file.path} at ${source.hubUrl}`);
  const out = await open(part, 'a');
  let done = offset;
  try {
    const body = Readable.fromWeb(blob.slice(offset).stream() as unknown as WebReadableStream<Uint8Array>);
    for await (const chunk of body) {
      const bytes = chunk as Buffer;
      await out.write(bytes);
      update(hashes, bytes);
      done += bytes.length;
      onBytes(bytes.length);
    }
  } catch (error) {
    throw downloadInterrupted(source.repo, file.path, done, file.size, error);
  } finally {
    await out.close();
  }
  if (done < file.size) throw downloadInterrupted(source.repo, file.path, done, file.size, new Error('the connection closed early'));
}

function update(hashes: Hash[], bytes: Buffer): void {
  for (const hash of hashes) hash.update(bytes);
}

/** The size of the file at `path`, or undefined when there is none. */
export async function fileSize(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

// Gets a hub checkpoint into the cache: <cache>/models/<owner>/<name>/<revision>/.
// It lists the repository's top-level .json and .safetensors files (sizes and
// hashes from the hub's tree API), downloads each one that is not complete
// yet (download-file.ts: resumable, verified) and finally writes a manifest.
// With the manifest in place the folder is used as it is, with no network.
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { listFiles, type ListFileEntry } from '@huggingface/hub';

import { RexOmniError } from '../errors.js';
import { downloadHubFile, fileSize, type HubSource, type RemoteFile } from './download-file.js';
import { hubOffline, hubRequestFailed } from './hub-errors.js';
import type { HubId } from './hub-id.js';

export const DEFAULT_HUB_URL = 'https://huggingface.co';
const MANIFEST = '.rex-omni-download.json';

/** Hears how a download goes: the whole size first, then bytes as they arrive. */
export interface DownloadProgress {
  start(totalBytes: number, files: readonly RemoteFile[]): void;
  file(path: string): void;
  advance(bytes: number): void;
  /** The download ended: `completed` is false when it failed. */
  stop(completed: boolean): void;
}

export interface DownloadModelOptions {
  cacheDir: string;
  hubUrl?: string;
  accessToken?: string;
  /** Never touch the network (HF_HUB_OFFLINE): only a complete cached copy will do. */
  offline?: boolean;
  progress?: DownloadProgress;
  fetch?: typeof fetch;
}

/** The cache folder for `id`. */
export function modelCacheDir(cacheDir: string, id: HubId): string {
  return join(cacheDir, 'models', ...id.repo.split('/'), id.revision.replaceAll('/', '--'));
}

/** The local folder of hub model `id`, downloaded first when the cache lacks a complete copy. */
export async function downloadModel(id: HubId, options: DownloadModelOptions): Promise<string> {
  const dir = modelCacheDir(options.cacheDir, id);
  if (await isComplete(dir)) return dir;
  if (options.offline) throw hubOffline(id.repo);
  const source: HubSource = {
    repo: id.repo,
    revision: id.revision,
    hubUrl: (options.hubUrl ?? DEFAULT_HUB_URL).replace(/\/+$/, ''),
    ...(options.accessToken ? { accessToken: options.accessToken } : {}),
    ...(options.fetch ? { fetch: options.fetch } : {}),
  };
  const files = await checkpointFiles(source);
  await mkdir(dir, { recursive: true });
  const progress = options.progress;
  progress?.start(files.reduce((sum, f) => sum + f.size, 0), files);
  let completed = false;
  try {
    for (const file of files) {
      progress?.file(file.path);
      const dest = join(dir, file.path);
      if ((await fileSize(dest)) === file.size) progress?.advance(file.size);
      else await downloadHubFile(source, file, dest, (bytes) => progress?.advance(bytes));
    }
    completed = true;
  } finally {
    progress?.stop(completed);
  }
  await writeFile(join(dir, MANIFEST), `${JSON.stringify({ repo: id.repo, revision: id.revision, hubUrl: source.hubUrl, files }, null, 2)}\n`);
  return dir;
}

async function checkpointFiles(source: HubSource): Promise<RemoteFile[]> {
  const entries: ListFileEntry[] = [];
  try {
    for await (const entry of listFiles({
      repo: { type: 'model', name: source.repo },
      revision: source.revision,
      recursive: false,
      hubUrl: source.hubUrl,
      ...(source.accessToken ? { accessToken: source.accessToken } : {}),
      ...(source.fetch ? { fetch: source.fetch } : {}),
    })) {
      entries.push(entry);
    }
  } catch (error) {
    throw hubRequestFailed(source.repo, source.hubUrl, error);
  }
  const files = entries
    .filter((e) => e.type === 'file' && !e.path.includes('/') && /\.(json|safetensors)$/.test(e.path))
    .map((e): RemoteFile => ({
      path: e.path,
      size: e.lfs?.size ?? e.size,
      ...(e.lfs ? { sha256: e.lfs.oid } : e.oid ? { gitOid: e.oid } : {}),
    }));
  if (!files.some((f) => f.path === 'config.json')) {
    throw new RexOmniError('ERR_REX_NOT_FOUND', `${source.repo} at ${source.hubUrl} has no config.json: it is not a checkpoint`);
  }
  return files;
}

async function isComplete(dir: string): Promise<boolean> {
  const manifest = join(dir, MANIFEST);
  if (!existsSync(manifest)) return false;
  try {
    const { files } = JSON.parse(await readFile(manifest, 'utf8')) as { files: RemoteFile[] };
    for (const file of files) if ((await fileSize(join(dir, file.path))) !== file.size) return false;
    return true;
  } catch {
    return false;
  }
}

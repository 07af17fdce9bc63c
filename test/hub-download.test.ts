// Model download from a hub: against a loopback stand-in of the Hugging Face
// hub (test/fixtures/local-hub.ts) serving the tiny checkpoint. Checks the
// files arrive whole and verified, a download cut off mid-file resumes with a
// range request, a tampered file is caught, no network gives a one-line error,
// and the CLI takes a hub id for --model.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';

import { downloadModel, modelCacheDir } from '../lib/hub/download-model.js';
import { closedPortUrl, startLocalHub, type LocalHub } from './fixtures/local-hub.js';
import { IMAGES_DIR, jsonLines, runCli } from './fixtures/run-cli.js';
import { ensureTinyCheckpoint, TINY_CHECKPOINT_FILES } from './fixtures/tiny-checkpoint.js';

const REPO = 'test-org/tiny-rex-omni';
const ID = { repo: REPO, revision: 'main' };
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

let tiny: string;
let hub: LocalHub | undefined;
const scratch: string[] = [];

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rex-hub-'));
  scratch.push(dir);
  return dir;
}

beforeAll(async () => {
  tiny = await ensureTinyCheckpoint();
});

afterEach(async () => {
  await hub?.close();
  hub = undefined;
  await Promise.all(scratch.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

const modelBytes = () => statSync(join(tiny, 'model.safetensors')).size;

describe('downloadModel from a local hub', () => {
  it('downloads every checkpoint file, verified, then uses the cache without the network', async () => {
    hub = await startLocalHub({ repo: REPO, dir: tiny });
    const cacheDir = await tempDir();
    const dir = await downloadModel(ID, { cacheDir, hubUrl: hub.url });
    expect(dir).toBe(modelCacheDir(cacheDir, ID));
    for (const file of TINY_CHECKPOINT_FILES) expect(sha256(join(dir, file)), file).toBe(sha256(join(tiny, file)));
    expect(existsSync(join(dir, 'model.safetensors.part'))).toBe(false);

    await hub.close();
    hub = undefined;
    // The hub is gone: a complete cached copy needs no network.
    expect(await downloadModel(ID, { cacheDir, hubUrl: await closedPortUrl() })).toBe(dir);
  });

  it('resumes a download cut off in the middle of a file with a range request', async () => {
    const cutAt = 12_000_000;
    hub = await startLocalHub({ repo: REPO, dir: tiny, cut: { path: 'model.safetensors', afterBytes: cutAt, times: 1 } });
    const cacheDir = await tempDir();
    const error = await downloadModel(ID, { cacheDir, hubUrl: hub.url }).catch((e: unknown) => e as Error & { code?: string });
    expect(error).toBeInstanceOf(Error);
    expect((error as { code?: string }).code).toBe('ERR_REX_DOWNLOAD_INTERRUPTED');
    expect((error as Error).message).toMatch(/stopped in model\.safetensors .* run the same command again to resume$/);
    const part = join(modelCacheDir(cacheDir, ID), 'model.safetensors.part');
    const kept = statSync(part).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThanOrEqual(cutAt);

    const dir = await downloadModel(ID, { cacheDir, hubUrl: hub.url });
    expect(hub.requests.some((r) => r.url.endsWith('/model.safetensors') && r.range === `bytes=${kept}-${modelBytes() - 1}`)).toBe(true);
    expect(sha256(join(dir, 'model.safetensors'))).toBe(sha256(join(tiny, 'model.safetensors')));
    expect(existsSync(part)).toBe(false);
  });

  it('rejects a file whose bytes do not match the hub hash and removes the partial file', async () => {
    const real = readFileSync(join(tiny, 'model.safetensors'));
    const tampered = Buffer.from(real);
    tampered[tampered.length - 1] ^= 0xff;
    hub = await startLocalHub({ repo: REPO, dir: tiny, tamper: { path: 'model.safetensors', bytes: tampered } });
    const cacheDir = await tempDir();
    const error = (await downloadModel(ID, { cacheDir, hubUrl: hub.url }).catch((e: unknown) => e)) as Error & { code?: string };
    expect(error.code).toBe('ERR_REX_DOWNLOAD_CORRUPT');
    expect(error.message).toContain("model.safetensors does not match the hub's sha256");
    expect(existsSync(join(modelCacheDir(cacheDir, ID), 'model.safetensors.part'))).toBe(false);
    expect(existsSync(join(modelCacheDir(cacheDir, ID), 'model.safetensors'))).toBe(false);
  });

  it('says in one line that there is no network, and how to use a local folder', async () => {
    const hubUrl = await closedPortUrl();
    const error = (await downloadModel(ID, { cacheDir: await tempDir(), hubUrl }).catch((e: unknown) => e)) as Error & { code?: string };
    expect(error.code).toBe('ERR_REX_HUB_UNREACHABLE');
    expect(error.message).toContain(`no connection to ${hubUrl}`);
    expect(error.message).toContain('point --model at a local folder');
    expect(error.message).not.toContain('\n');
  });

  it('names a repository the hub does not have', async () => {
    hub = await startLocalHub({ repo: REPO, dir: tiny });
    const error = (await downloadModel({ repo: 'test-org/absent', revision: 'main' }, { cacheDir: await tempDir(), hubUrl: hub.url }).catch(
      (e: unknown) => e,
    )) as Error & { code?: string };
    expect(error.code).toBe('ERR_REX_NOT_FOUND');
    expect(error.message).toContain('has no model test-org/absent');
  });
});

describe('rex-omni --model <hub id>', () => {
  const detectArgs = ['detect', join(IMAGES_DIR, 'cup.png'), '--model', REPO, '-c', 'cup', '--max-pixels', '50176', '--max-new-tokens', '24', '--jsonl'];

  it('downloads into REX_OMNI_CACHE, resuming a cut-off download on the second run, then detects', async () => {
    hub = await startLocalHub({ repo: REPO, dir: tiny, cut: { path: 'model.safetensors', afterBytes: 5_000_000, times: 1 } });
    const cache = await tempDir();
    const env = { HF_ENDPOINT: hub.url, REX_OMNI_CACHE: cache };

    const first = await runCli(detectArgs, { env });
    expect(first.status).toBe(1);
    expect(first.stderr).toMatch(/^rex-omni: downloading test-org\/tiny-rex-omni: 6 files/m);
    expect(first.stderr).toMatch(/^rex-omni: the download of test-org\/tiny-rex-omni stopped in model\.safetensors at .*run the same command again to resume \[ERR_REX_DOWNLOAD_INTERRUPTED\]$/m);
    expect(first.stderr).not.toMatch(/^\s+at /m);
    expect(first.stderr).not.toContain('in the cache');

    const second = await runCli(detectArgs, { env });
    expect(second.status, second.stderr).toBe(0);
    expect(hub.requests.filter((r) => r.url.endsWith('/model.safetensors') && r.range?.startsWith('bytes=') && r.range !== 'bytes=0-0')).toHaveLength(1);
    const lines = jsonLines(second.stdout);
    expect(lines.at(-1)).toMatchObject({ type: 'summary', images: 1, failed: 0 });
    expect(sha256(join(cache, 'models', 'test-org', 'tiny-rex-omni', 'main', 'model.safetensors'))).toBe(sha256(join(tiny, 'model.safetensors')));
  });

  it('without a network exits 1 with one line that says so and points at --model DIR', async () => {
    const run = await runCli(detectArgs, { env: { HF_ENDPOINT: await closedPortUrl(), REX_OMNI_CACHE: await tempDir() } });
    expect(run.status).toBe(1);
    const lines = run.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^rex-omni: cannot download test-org\/tiny-rex-omni: no connection to http:\/\/127\.0\.0\.1:\d+ .*point --model at a local folder/);
  });

  it('with HF_HUB_OFFLINE=1 and nothing cached exits 1 without trying the network', async () => {
    hub = await startLocalHub({ repo: REPO, dir: tiny });
    const run = await runCli(detectArgs, { env: { HF_ENDPOINT: hub.url, HF_HUB_OFFLINE: '1', REX_OMNI_CACHE: await tempDir() } });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('HF_HUB_OFFLINE is set');
    expect(hub.requests).toHaveLength(0);
  });
});

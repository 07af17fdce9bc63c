// `rex-omni serve` as a process (the built CLI, dist/lib/cli.js): listens,
// answers once the model is loaded, writes JSON logs with the request id,
// refuses a public address without a token, and on SIGTERM drains and exits 0.
import { spawn } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';

import { CLI_PATH, runCli } from './fixtures/run-cli.js';
import { ndjson, syntheticPng } from './server-harness.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

let tiny: string;
beforeAll(async () => {
  tiny = await ensureTinyCheckpoint();
});

describe('rex-omni serve', () => {
  it('serves, logs JSON with request ids, and exits 0 on SIGTERM after draining', async () => {
    const child = spawn(process.execPath, [CLI_PATH, 'serve', '--model', tiny, '--port', '0', '--threads', '2', '--max-pixels', '50176', '--drain-ms', '2000'], {
      env: { ...process.env, REX_OMNI_TOKEN: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const ready = await new Promise<string>((resolve, reject) => {
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
        const match = /ready on (http:\/\/\S+)/.exec(stderr);
        if (match) resolve(match[1]!);
      });
      void exited.then(() => reject(new Error(`serve exited early: ${stderr}`)));
    });
    try {
      expect(stderr).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+/);
      expect((await fetch(`${ready}/readyz`)).status).toBe(200);
      const response = await fetch(`${ready}/v1/detect?categories=cup&maxNewTokens=8`, {
        method: 'POST',
        headers: { 'content-type': 'image/png', 'x-request-id': 'cli-test-request-1' },
        body: await syntheticPng(112, 112, 9),
      });
      expect(response.status).toBe(200);
      expect(response.headers.get('x-request-id')).toBe('cli-test-request-1');
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(stderr).toContain('SIGTERM: draining');
    expect(stderr).toContain('rex-omni: stopped');
    const logs = ndjson(stdout);
    const mine = logs.filter((l) => l.requestId === 'cli-test-request-1');
    expect(mine.map((l) => l.msg)).toEqual(expect.arrayContaining(['incoming request', 'request completed']));
    expect(mine.every((l) => typeof l.level === 'number' && typeof l.time === 'number')).toBe(true);
  });

  it('refuses a public address without a token', async () => {
    const run = await runCli(['serve', '--model', tiny, '--host', '0.0.0.0', '--port', '0'], { env: { REX_OMNI_TOKEN: '' } });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('refusing to listen on 0.0.0.0 without a token');
  });

  it('has --help', async () => {
    const run = await runCli(['serve', '--help']);
    expect(run.status, run.stderr).toBe(0);
    for (const flag of ['--port', '--host', '--token', '--insecure-public', '--cors', '--max-queue', '--max-input-pixels', '--deadline-ms', '--drain-ms'])
      expect(run.stdout).toContain(flag);
  });
});

#!/usr/bin/env node
// The `rex-omni` command line.
//   rex-omni info <checkpoint-dir> [--verify]   print the model config and weights summary
import { parseArgs } from 'node:util';

import { Checkpoint } from './checkpoint.js';
import { loadAddon } from './native.js';

const USAGE = `usage:
  rex-omni info <checkpoint-dir> [--verify]   open a checkpoint and print its config
  rex-omni backend                            print which native backend loads here`;

async function info(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, options: { verify: { type: 'boolean' } }, allowPositionals: true });
  if (positionals.length !== 1) throw new TypeError(`rex-omni info: expected one checkpoint directory but got ${positionals.length}`);
  await using checkpoint = await Checkpoint.open(positionals[0]!, { verify: values.verify ?? false });
  const summary = {
    dir: checkpoint.dir,
    tensorLayout: checkpoint.tensorLayout,
    tensors: checkpoint.tensorCount,
    bytes: checkpoint.totalBytes,
    config: checkpoint.config,
  };
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
}

function backend(): void {
  const { path, info: backendInfo } = loadAddon();
  process.stdout.write(`${JSON.stringify({ path, ...backendInfo }, null, 2)}\n`);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'info':
      await info(rest);
      return 0;
    case 'backend':
      backend();
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 1 : 0;
    default:
      process.stderr.write(`rex-omni: unknown command ${JSON.stringify(command)}\n${USAGE}\n`);
      return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: Error & { code?: string }) => {
    process.stderr.write(`rex-omni: ${error.message}${error.code ? ` [${error.code}]` : ''}\n`);
    process.exitCode = 1;
  },
);

#!/usr/bin/env node
// The `rex-omni` command line.
//   rex-omni detect <image> --model DIR --categories a,b [--max-pixels N] [--unconstrained]
//   rex-omni info <checkpoint-dir> [--verify]   print the model config and weights summary
//   rex-omni backend                            which native backend loads here
import { parseArgs } from 'node:util';

import { Checkpoint } from './checkpoint.js';
import { loadAddon } from './native.js';
import { RexOmni } from './rex-omni.js';

const USAGE = `usage:
  rex-omni detect <image> --model <checkpoint-dir> --categories <a,b,...> [--max-pixels N] [--max-new-tokens N] [--unconstrained]
      detect the categories; prints one JSON line per box as it is decoded, then a summary line
  rex-omni info <checkpoint-dir> [--verify]   open a checkpoint and print its config
  rex-omni backend                            print which native backend loads here`;

async function detect(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      model: { type: 'string' },
      categories: { type: 'string' },
      'max-pixels': { type: 'string' },
      'max-new-tokens': { type: 'string' },
      unconstrained: { type: 'boolean' },
    },
  });
  if (positionals.length !== 1) throw new TypeError(`rex-omni detect: expected one image path but got ${positionals.length}`);
  if (!values.model) throw new TypeError('rex-omni detect: expected --model <checkpoint-dir> but got nothing');
  if (!values.categories) throw new TypeError('rex-omni detect: expected --categories <a,b,...> but got nothing');
  const categories = values.categories.split(',').map((c) => c.trim()).filter((c) => c.length > 0);
  const number = (flag: string, value: string | undefined) => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) throw new RangeError(`rex-omni detect: expected ${flag} to be a positive integer but got ${JSON.stringify(value)}`);
    return n;
  };
  await using model = await RexOmni.load(values.model);
  const stream = model.stream(positionals[0]!, { task: 'detection', categories }, {
    maxPixels: number('--max-pixels', values['max-pixels']),
    maxNewTokens: number('--max-new-tokens', values['max-new-tokens']),
    constrained: !values.unconstrained,
  });
  for await (const event of stream) {
    if (event.type === 'prediction' && event.prediction.kind === 'box') {
      const { phrase, coords, score } = event.prediction;
      process.stdout.write(`${JSON.stringify({ phrase, box: coords.map((v) => Math.round(v * 10) / 10), score })}\n`);
    } else if (event.type === 'done') {
      const { tokens, timings, finishReason } = event.result;
      process.stdout.write(`${JSON.stringify({ done: finishReason, predictions: event.result.predictions.length, tokens, timings })}\n`);
    }
  }
}

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
    case 'detect':
      await detect(rest);
      return 0;
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

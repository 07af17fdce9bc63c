// The options every task command (and the demo) shares: the model, the
// backend, the run limits and where the results go; and what they become for
// RexOmni.load and RexOmni.stream.
import { Command, Option } from 'commander';

import type { LoadOptions } from '../rex-omni.js';
import type { RunOptions } from '../run-options.js';
import { positiveInteger } from './option-parsers.js';

export const DEFAULT_MODEL = 'IDEA-Research/Rex-Omni';

export interface RunFlags {
  model: string;
  backend: 'auto' | 'cpu' | 'cuda';
  maxPixels?: number;
  maxNewTokens?: number;
  unconstrained?: boolean;
  maxPredictions?: number;
  maxPhraseTokens?: number;
  out?: string;
  json?: boolean;
  jsonl?: boolean;
}

/** --backend, --max-pixels, --max-new-tokens, --unconstrained, --max-predictions, --max-phrase-tokens, --out, --json, --jsonl. */
export function addOutputAndLimitFlags(command: Command): Command {
  return command
    .addOption(new Option('--backend <backend>', 'where to run').choices(['auto', 'cpu', 'cuda']).default('auto'))
    .option('--max-pixels <n>', 'resize larger images to at most this many pixels (default 2007040)', positiveInteger)
    .option('--max-new-tokens <n>', 'stop each image after this many output tokens (default 4096)', positiveInteger)
    .option('--unconstrained', "decode without the output grammar (the reference's plain decoding)")
    .option('--max-predictions <n>', 'stop after this many predictions per image', positiveInteger)
    .option('--max-phrase-tokens <n>', 'cut free-text phrases (OCR text, GUI elements) at this many tokens (default 128)', positiveInteger)
    .option('--out <dir>', 'write each image with its results drawn on it into this folder')
    .addOption(new Option('--json', 'print one JSON document at the end').conflicts('jsonl'))
    .addOption(new Option('--jsonl', 'print one JSON line per prediction as it is decoded (the default when not a terminal)').conflicts('json'));
}

/** --model plus the flags above. */
export function addRunFlags(command: Command): Command {
  command.option('-m, --model <dir|hub-id>', 'a checkpoint folder, or a Hugging Face hub id to download', DEFAULT_MODEL);
  return addOutputAndLimitFlags(command);
}

export function loadOptionsFrom(flags: RunFlags): LoadOptions {
  return { backend: flags.backend };
}

export function runOptionsFrom(flags: RunFlags): RunOptions {
  return {
    ...(flags.maxPixels !== undefined ? { maxPixels: flags.maxPixels } : {}),
    ...(flags.maxNewTokens !== undefined ? { maxNewTokens: flags.maxNewTokens } : {}),
    ...(flags.maxPredictions !== undefined ? { maxPredictions: flags.maxPredictions } : {}),
    ...(flags.maxPhraseTokens !== undefined ? { maxPhraseTokens: flags.maxPhraseTokens } : {}),
    constrained: !flags.unconstrained,
  };
}

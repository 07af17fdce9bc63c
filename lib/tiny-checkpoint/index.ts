// The tiny Rex-Omni checkpoint: the real Qwen2.5-VL structure at toy widths,
// with deterministic bf16 weights (weights.ts says how they are drawn and why)
// and a Rex-Omni-style tokenizer. The tests, the golden files and
// `rex-omni demo` all use it. Its weights are random: its boxes mean nothing.
// `ensureTinyCheckpoint(dir)` keeps one flat-layout copy in `dir` and
// regenerates it when a file is missing or TINY_CHECKPOINT_VERSION changes.
// Bump the version whenever any output byte would change.
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { tinyGenerationConfig, tinyModelConfig, tinyPreprocessorConfig, toConfigJsonText, type CheckpointLayout } from './config.js';
import { writeSafetensors } from './safetensors-writer.js';
import { writeRexTokenizerFiles } from './tokenizer.js';
import { generateTinyTensors } from './weights.js';

export type { CheckpointLayout } from './config.js';

export const TINY_CHECKPOINT_VERSION = 1;

export const TINY_CHECKPOINT_FILES = [
  'config.json',
  'generation_config.json',
  'model.safetensors',
  'preprocessor_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
] as const;

export const VERSION_STAMP_FILE = '.tiny-checkpoint-version';

export interface GenerateTinyCheckpointOptions {
  layout?: CheckpointLayout;
}

/** Writes every file of the tiny checkpoint into `dir` (created if needed). */
export async function generateTinyCheckpoint(dir: string, options: GenerateTinyCheckpointOptions = {}): Promise<void> {
  const layout = options.layout ?? 'flat';
  if (layout !== 'flat' && layout !== 'nested') {
    throw new RangeError(`expected layout 'flat' or 'nested' but got ${JSON.stringify(layout)}`);
  }
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), toConfigJsonText(tinyModelConfig(layout)));
  await writeFile(join(dir, 'generation_config.json'), toConfigJsonText(tinyGenerationConfig()));
  await writeFile(join(dir, 'preprocessor_config.json'), toConfigJsonText(tinyPreprocessorConfig()));
  await writeRexTokenizerFiles(dir);
  await writeSafetensors(join(dir, 'model.safetensors'), generateTinyTensors(layout));
}

/**
 * The flat-layout tiny checkpoint in `dir`, generated first (in a staging
 * folder, then renamed into place) when a file is missing or the version
 * stamp differs from TINY_CHECKPOINT_VERSION. Safe when processes race.
 */
export async function ensureTinyCheckpoint(dir: string): Promise<string> {
  if (await isCurrent(dir)) return dir;
  const staging = `${dir}.staging-${process.pid}-${Date.now()}`;
  try {
    await generateTinyCheckpoint(staging, { layout: 'flat' });
    await writeFile(join(staging, VERSION_STAMP_FILE), `${TINY_CHECKPOINT_VERSION}\n`);
    if (await isCurrent(dir)) return dir; // another process finished first
    await rm(dir, { recursive: true, force: true });
    try {
      await rename(staging, dir);
    } catch (error) {
      if (!(await isCurrent(dir))) throw error;
    }
    return dir;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

async function isCurrent(dir: string): Promise<boolean> {
  if (!TINY_CHECKPOINT_FILES.every((file) => existsSync(join(dir, file)))) return false;
  try {
    return (await readFile(join(dir, VERSION_STAMP_FILE), 'utf8')).trim() === String(TINY_CHECKPOINT_VERSION);
  } catch {
    return false;
  }
}

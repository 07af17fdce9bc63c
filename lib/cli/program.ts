// The commander program: the eight task commands, demo, info and bench, each
// with its own --help. Parse errors print the failing command's help on
// stderr and throw (exitOverride), so main.ts can choose the exit code.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';

import { packageRoot } from '../native.js';
import { addBenchCommand } from './commands/bench.js';
import { addDemoCommand } from './commands/demo.js';
import { addInfoCommand } from './commands/info.js';
import { addServeCommand } from './commands/serve.js';
import { addTaskCommand } from './commands/task.js';
import type { CliStreams } from './run-images.js';
import { TASK_COMMANDS } from './task-commands.js';

const EXIT_CODES_HELP = `
Output: a table on a terminal; JSON lines (one per prediction, as decoded) when piped; --json for one document.
Exit codes: 0 done · 1 a missing file or model, or another failure · 2 bad arguments · 3 some images failed.
Models: --model takes a checkpoint folder or a hub id (downloaded into $REX_OMNI_CACHE, else ~/.cache/rex-omni).`;

function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

export function createProgram(io: CliStreams, setExitCode: (code: number) => void): Command {
  const program = new Command('rex-omni')
    .description('Rex-Omni, the detect-anything vision-language model, from the terminal.')
    .version(packageVersion(), '-V, --version')
    .option('--verbose', 'print the stack trace of an error')
    .configureHelp({ showGlobalOptions: true })
    .configureOutput({ writeOut: (text) => void io.stdout.write(text), writeErr: (text) => void io.stderr.write(text) })
    .showHelpAfterError()
    .exitOverride();
  for (const def of TASK_COMMANDS) addTaskCommand(program, def, io, setExitCode);
  addDemoCommand(program, io, setExitCode);
  addInfoCommand(program, io);
  addBenchCommand(program, setExitCode);
  addServeCommand(program, io);
  program.addHelpText('after', EXIT_CODES_HELP);
  return program;
}

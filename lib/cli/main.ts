// Runs the command line and turns every outcome into an exit code (see
// exit-codes.ts). Errors print one line, "rex-omni: <message> [<code>]";
// the stack trace only with --verbose.
import { CommanderError } from 'commander';

import { CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './exit-codes.js';
import { createProgram } from './program.js';
import type { CliStreams } from './run-images.js';

export async function runCli(argv: readonly string[], io: CliStreams = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  let exitCode = EXIT_OK;
  const program = createProgram(io, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (error) {
    // Commander has printed its message and the command's help already.
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    const verbose = Boolean(program.opts().verbose) || argv.includes('--verbose');
    io.stderr.write(errorText(error, verbose));
    return error instanceof CliError ? error.exitCode : EXIT_FAILURE;
  }
}

function errorText(error: unknown, verbose: boolean): string {
  if (!(error instanceof Error)) return `rex-omni: ${String(error)}\n`;
  const code = (error as { code?: unknown }).code;
  const line = `rex-omni: ${error.message}${typeof code === 'string' ? ` [${code}]` : ''}\n`;
  return verbose && error.stack ? `${line}${error.stack}\n` : line;
}

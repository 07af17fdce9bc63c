#!/usr/bin/env node
// The `rex-omni` command line: rex-omni <task> <image|folder|glob>… [options],
// rex-omni demo, rex-omni info, rex-omni bench. The program is in lib/cli/.
import { runCli } from './cli/main.js';

// A reader that stops early (`rex-omni … | head`) ends the run quietly.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error;
  process.exit(process.exitCode ?? 0);
});

process.exitCode = await runCli(process.argv.slice(2));

// `rex-omni info [--model …]`: the native addon and backend (GPU, CUDA and
// driver versions), and with --model the checkpoint's config; with --load
// also the loaded engine's own report (backend in use, memory).
import type { Command } from 'commander';
import { Option } from 'commander';

import { Checkpoint } from '../../checkpoint.js';
import { loadAddon } from '../../native.js';
import { RexOmni } from '../../rex-omni.js';
import { resolveModel } from '../model-source.js';
import type { CliStreams } from '../run-images.js';
import { formatInfo, type InfoReport } from './info-format.js';

interface InfoFlags {
  model?: string;
  load?: boolean;
  verify?: boolean;
  backend: 'auto' | 'cpu' | 'cuda';
  json?: boolean;
}

export function addInfoCommand(program: Command, io: CliStreams): void {
  program
    .command('info')
    .summary('the backend, GPU, CUDA and driver, and a model config')
    .description('Prints which native addon loads here, its backend and GPU (CUDA runtime and driver versions), and with --model the checkpoint config.')
    .option('-m, --model <dir|hub-id>', 'also describe this checkpoint (a hub id is downloaded first)')
    .option('--load', 'also load the model and print the engine report (backend in use, memory)')
    .option('--verify', 'check every weight for NaN and Inf')
    .addOption(new Option('--backend <backend>', 'the backend for --load').choices(['auto', 'cpu', 'cuda']).default('auto'))
    .option('--json', 'print JSON (the default when not a terminal)')
    .action(async (options: InfoFlags) => {
      const { path, info } = loadAddon();
      const report: InfoReport = { addon: { path, ...info } };
      if (options.model) {
        const dir = await resolveModel(options.model, process.env, io.stderr);
        await using checkpoint = await Checkpoint.open(dir, { verify: options.verify ?? false });
        report.model = { dir, tensorLayout: checkpoint.tensorLayout, tensors: checkpoint.tensorCount, bytes: checkpoint.totalBytes, config: checkpoint.config };
        if (options.load) {
          await using model = await RexOmni.load(dir, { backend: options.backend });
          report.engine = model.info();
        }
      }
      io.stdout.write(options.json || !io.stdout.isTTY ? `${JSON.stringify(report, null, 2)}\n` : `${formatInfo(report)}\n`);
    });
}

// `rex-omni <task> <image|folder|glob>… [options]`: one command per task.
import type { Command } from 'commander';

import { expandInputs } from '../inputs.js';
import { resolveModel } from '../model-source.js';
import { chooseFormat } from '../output/sinks.js';
import { runImages, type CliStreams } from '../run-images.js';
import { addRunFlags, loadOptionsFrom, runOptionsFrom, type RunFlags } from '../run-flags.js';
import type { TaskCommand } from '../task-commands.js';

export function addTaskCommand(program: Command, def: TaskCommand, io: CliStreams, setExitCode: (code: number) => void): void {
  const command = program
    .command(def.name)
    .summary(def.summary)
    .description(`${def.summary[0]!.toUpperCase()}${def.summary.slice(1)}, on each image (the API's "${def.task}" task).`)
    .argument('<images...>', 'image files, folders of images, or quoted globs such as "photos/*.jpg"');
  def.addOptions(command);
  addRunFlags(command);
  command.addHelpText('after', `\nExample:\n  ${def.example}\n  ${def.example.replace(/^rex-omni \S+ \S+/, `rex-omni ${def.name} photos/`)} --out drawn/ --jsonl > results.jsonl`);
  command.action(async (images: string[], _options: unknown, self: Command) => {
    const options = self.optsWithGlobals<RunFlags & { verbose?: boolean } & Record<string, unknown>>();
    const files = await expandInputs(images);
    const task = def.spec(options);
    const modelDir = await resolveModel(options.model, process.env, io.stderr);
    setExitCode(
      await runImages(
        {
          images: files,
          task,
          modelDir,
          loadOptions: loadOptionsFrom(options),
          runOptions: runOptionsFrom(options),
          format: chooseFormat(options, Boolean(io.stdout.isTTY)),
          ...(options.out ? { out: options.out } : {}),
          verbose: Boolean(options.verbose),
        },
        io,
      ),
    );
  });
}

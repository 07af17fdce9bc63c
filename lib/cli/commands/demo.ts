// `rex-omni demo`: a first run without downloading anything. It writes the
// tiny generated checkpoint (random weights) into the cache, detects "person"
// and "cup" in the bundled picture, prints and draws the result, and says
// plainly that the boxes mean nothing.
import { join } from 'node:path';
import type { Command } from 'commander';

import { rexOmniCacheDir } from '../../hub/cache-dir.js';
import { packageRoot } from '../../native.js';
import { ensureTinyCheckpoint } from '../../tiny-checkpoint/index.js';
import { chooseFormat } from '../output/sinks.js';
import { addOutputAndLimitFlags, DEFAULT_MODEL, loadOptionsFrom, runOptionsFrom, type RunFlags } from '../run-flags.js';
import { runImages, type CliStreams } from '../run-images.js';

export const DEMO_CATEGORIES = ['person', 'cup'];
export const DEMO_OUT = 'rex-omni-demo';

export function demoImagePath(): string {
  return join(packageRoot(), 'assets', 'demo', 'cafe.jpg');
}

const NOTICE =
  'rex-omni demo: this runs a tiny generated checkpoint with RANDOM weights. Its boxes are meaningless;\n' +
  'the demo only shows that the runtime, the output and the drawing work on this machine.\n';

export function addDemoCommand(program: Command, io: CliStreams, setExitCode: (code: number) => void): void {
  const command = program
    .command('demo')
    .summary('a first run with a tiny random-weight checkpoint (no download)')
    .description(
      `Writes the tiny test checkpoint (random weights) into the cache, detects ${DEMO_CATEGORIES.join(' and ')} in a bundled picture, ` +
        `prints the result and draws it (into ./${DEMO_OUT} unless --out says otherwise). The boxes are meaningless.`,
    );
  addOutputAndLimitFlags(command);
  command.action(async (options: RunFlags) => {
    const format = chooseFormat(options, Boolean(io.stdout.isTTY));
    const say = (text: string) => void (format === 'table' ? io.stdout : io.stderr).write(text);
    say(NOTICE);
    const modelDir = await ensureTinyCheckpoint(join(rexOmniCacheDir(), 'demo', 'tiny-rex-omni'));
    const code = await runImages(
      {
        images: [demoImagePath()],
        task: { task: 'detection', categories: DEMO_CATEGORIES },
        modelDir,
        loadOptions: loadOptionsFrom(options),
        runOptions: { maxPixels: 200704, maxNewTokens: 256, ...runOptionsFrom(options) },
        format,
        out: options.out ?? DEMO_OUT,
      },
      io,
    );
    say(`Random weights, meaningless boxes. For real results:\n  rex-omni detect photo.jpg --model ${DEFAULT_MODEL} --categories ${DEMO_CATEGORIES.join(',')}\n`);
    setExitCode(code);
  });
}

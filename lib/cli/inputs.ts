// Turns the command line's image arguments into a list of files. Each
// argument is an image file, a folder (its image files, sorted by name, not
// recursive) or a glob (tinyglobby; quote it so the shell leaves it alone),
// its matches absolute when the pattern is.
// A path that does not exist, or a folder or glob with no images, is an error
// that names it.
import { readdir, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { glob, isDynamicPattern } from 'tinyglobby';

import { CliError } from './exit-codes.js';

const IMAGE_EXTENSIONS = /\.(jpe?g|png|webp|avif|tiff?|gif)$/i;

export async function expandInputs(args: readonly string[], cwd = process.cwd()): Promise<string[]> {
  const files: string[] = [];
  for (const arg of args) {
    const path = resolve(cwd, arg);
    const info = await stat(path).catch(() => undefined);
    if (info?.isFile()) {
      files.push(arg);
    } else if (info?.isDirectory()) {
      const names = (await readdir(path, { withFileTypes: true }))
        .filter((entry) => entry.isFile() && IMAGE_EXTENSIONS.test(entry.name))
        .map((entry) => entry.name)
        .sort();
      if (names.length === 0) throw new CliError(`no image files (jpg, png, webp, avif, tiff, gif) in the folder ${arg}`);
      files.push(...names.map((name) => join(arg, name)));
    } else if (isDynamicPattern(arg)) {
      const matches = (await glob(arg, { cwd, onlyFiles: true, expandDirectories: false, absolute: isAbsolute(arg) })).filter((m) => IMAGE_EXTENSIONS.test(m)).sort();
      if (matches.length === 0) throw new CliError(`no image file matches ${arg}`);
      files.push(...matches);
    } else {
      throw new CliError(`no such image file or folder: ${path}`);
    }
  }
  return [...new Set(files)];
}

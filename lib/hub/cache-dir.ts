// Where rex-omni keeps downloaded models and the demo checkpoint:
// $REX_OMNI_CACHE, else the per-user cache folder ($XDG_CACHE_HOME/rex-omni or
// ~/.cache/rex-omni; %LOCALAPPDATA%\rex-omni\cache on Windows).
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

export function rexOmniCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.REX_OMNI_CACHE) return resolve(env.REX_OMNI_CACHE);
  if (process.platform === 'win32' && env.LOCALAPPDATA) return join(env.LOCALAPPDATA, 'rex-omni', 'cache');
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, 'rex-omni');
  return join(homedir(), '.cache', 'rex-omni');
}

// --model: a local checkpoint folder, or a hub id ("IDEA-Research/Rex-Omni",
// optionally "@revision") that is downloaded into the cache first. A local
// path wins when both could be meant. The hub is $HF_ENDPOINT (default
// https://huggingface.co); $HF_TOKEN is sent when set; $HF_HUB_OFFLINE=1
// allows only cached copies.
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';

import { RexOmniError } from '../errors.js';
import { rexOmniCacheDir } from '../hub/cache-dir.js';
import { DEFAULT_HUB_URL, downloadModel } from '../hub/download-model.js';
import { parseHubId } from '../hub/hub-id.js';
import { CliError } from './exit-codes.js';
import { downloadProgress } from './progress.js';

const truthy = (value: string | undefined) => value !== undefined && /^(1|true|yes|on)$/i.test(value);

/** The local folder `model` names, downloading it first when it is a hub id. */
export async function resolveModel(model: string, env: NodeJS.ProcessEnv = process.env, stderr: NodeJS.WriteStream = process.stderr): Promise<string> {
  const local = resolve(model);
  const info = await stat(local).catch(() => undefined);
  if (info?.isDirectory()) return local;
  if (info) throw new CliError(`--model ${model}: expected a checkpoint folder but ${local} is a file`);
  const id = parseHubId(model);
  if (!id) throw new CliError(`no model folder at ${local} (and ${JSON.stringify(model)} is not a hub id such as IDEA-Research/Rex-Omni)`);
  try {
    return await downloadModel(id, {
      cacheDir: rexOmniCacheDir(env),
      hubUrl: env.HF_ENDPOINT || DEFAULT_HUB_URL,
      ...(env.HF_TOKEN ? { accessToken: env.HF_TOKEN } : {}),
      offline: truthy(env.HF_HUB_OFFLINE),
      progress: downloadProgress(id.repo, stderr),
    });
  } catch (error) {
    // "models/Rex-Omni" may have been meant as a local folder.
    if (error instanceof RexOmniError && error.code === 'ERR_REX_NOT_FOUND') throw new CliError(`no model folder at ${local}, and ${error.message}`);
    throw error;
  }
}

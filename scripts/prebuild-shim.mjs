#!/usr/bin/env node
// Stands in for node-gyp when prebuildify builds the CPU prebuild:
//   PREBUILD_NODE_GYP="node scripts/prebuild-shim.mjs" prebuildify --napi --strip
// prebuildify calls `<cmd> rebuild --target=…` and collects build/Release/*.node,
// so this builds only the CPU addon (no CUDA: a prebuild must load everywhere).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = [join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js'), 'rebuild', '-d', root,
  '--CDREX_WITH_CUDA=OFF', '--CDREX_BUILD_TESTS=OFF', '-T', 'rex_omni_cpu'];
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(result.status ?? 1);

#!/usr/bin/env node
// Builds the native addons from source with cmake-js, offline.
//
// `npm install` runs this. The CPU addon is always built; the CUDA addon is
// built too when nvcc and cuBLASLt are found (CMakeLists.txt decides). Headers
// come from node-api-headers (package.json "binary.napi_versions"), so nothing
// is downloaded.
//
//   node scripts/build-native.mjs            build unless build/Release/rex_omni_cpu.node exists
//   node scripts/build-native.mjs --force    always build
//   REX_OMNI_CUDA=0                          skip the CUDA backend
//   REX_OMNI_BUILD_JOBS=N                    parallel compile jobs (default: CPU count)
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const force = process.argv.includes('--force');
const built = join(root, 'build', 'Release', 'rex_omni_cpu.node');

if (!force && existsSync(built)) {
  console.log(`rex-omni: native addon already built (${built}); use --force to rebuild`);
  process.exit(0);
}

const jobs = process.env.REX_OMNI_BUILD_JOBS ?? String(availableParallelism());
const args = [join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js'), 'build', '-d', root, '-p', jobs];
if (process.env.REX_OMNI_CUDA === '0') args.push('--CDREX_WITH_CUDA=OFF');
// Tests of the C++ core are built by `npm run test:native`, not at install time.
args.push('--CDREX_BUILD_TESTS=OFF');

const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env: process.env });
if (result.status !== 0) {
  console.error('rex-omni: the native build failed (see the cmake output above).');
  process.exit(result.status ?? 1);
}

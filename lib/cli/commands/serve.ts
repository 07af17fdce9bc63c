// `rex-omni serve`: the model over HTTP (lib/server), until SIGTERM or
// SIGINT, which drain in-flight requests up to --drain-ms, then close the model.
import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';

import { RexOmni } from '../../rex-omni.js';
import { checkBindAllowed } from '../../server/auth.js';
import { createServer } from '../../server/index.js';
import { DEFAULT_SERVER_LIMITS, type ServerLimits, type ServerOptions } from '../../server/options.js';
import { CliError, EXIT_USAGE } from '../exit-codes.js';
import { resolveModel } from '../model-source.js';
import { commaList, positiveInteger } from '../option-parsers.js';
import type { CliStreams } from '../run-images.js';
import { DEFAULT_MODEL } from '../run-flags.js';

// The limits' flags carry ServerLimits' own names; the rest are the CLI's.
interface ServeFlags
  extends Pick<
    ServerLimits,
    'maxBodyBytes' | 'maxInputPixels' | 'maxCategories' | 'maxPhraseLength' | 'maxNewTokens' | 'deadlineMs' | 'maxBatchImages'
  > {
  model: string;
  port: number;
  host: string;
  token?: string;
  insecurePublic?: boolean;
  cors?: string[];
  backend: 'auto' | 'cpu' | 'cuda';
  threads?: number;
  maxActive: number;
  maxQueue: number;
  retryAfter: number;
  maxPixels?: number;
  drainMs: number;
  logLevel: string;
}

function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n > 65535) throw new InvalidArgumentError(`expected a port from 0 to 65535 but got ${JSON.stringify(value)}`);
  return n;
}

function nonNegative(value: string): number {
  if (!/^\d+$/.test(value.trim())) throw new InvalidArgumentError(`expected a non-negative integer but got ${JSON.stringify(value)}`);
  return Number(value);
}

const L = DEFAULT_SERVER_LIMITS;

export function addServeCommand(program: Command, io: CliStreams): void {
  program
    .command('serve')
    .summary('serve the model over HTTP (POST /v1/<task>, /v1/batch, /metrics, /openapi.json)')
    .description(
      'Serves every task over HTTP until SIGTERM or SIGINT, which stop accepting, drain in-flight requests up to --drain-ms and close the model. ' +
        'Without a token it listens only on loopback unless --insecure-public. JSON logs (pino) go to stdout.',
    )
    .option('-m, --model <dir|hub-id>', 'a checkpoint folder, or a Hugging Face hub id to download', DEFAULT_MODEL)
    .option('-p, --port <n>', 'the port (0: a free one)', port, 8080)
    .option('--host <host>', 'the address to listen on', '127.0.0.1')
    .option('--token <token>', 'require Authorization: Bearer <token> (default: $REX_OMNI_TOKEN)')
    .option('--insecure-public', 'allow listening beyond loopback without a token')
    .option('--cors <origins>', 'allow these origins (comma-separated, or "*"); CORS is off by default', commaList)
    .addOption(new Option('--backend <backend>', 'where to run').choices(['auto', 'cpu', 'cuda']).default('auto'))
    .option('--threads <n>', 'CPU threads (default: all)', positiveInteger)
    .option('--max-active <n>', 'requests decoded together (the engine\'s maxActiveRequests)', positiveInteger, L.maxActiveRequests)
    .option('--max-queue <n>', 'requests waiting beyond those; then 503 with Retry-After', nonNegative, L.maxQueuedRequests)
    .option('--max-body-bytes <n>', 'largest request body (or multipart file)', positiveInteger, L.maxBodyBytes)
    .option('--max-input-pixels <n>', 'largest image, width x height, read from its header before decoding', positiveInteger, L.maxInputPixels)
    .option('--max-categories <n>', 'most categories (or reference boxes) per request', positiveInteger, L.maxCategories)
    .option('--max-phrase-length <n>', 'longest category or element, in characters', positiveInteger, L.maxPhraseLength)
    .option('--max-new-tokens <n>', 'largest maxNewTokens a request may ask for (and its default)', positiveInteger, L.maxNewTokens)
    .option('--deadline-ms <n>', 'each request\'s deadline from its arrival', positiveInteger, L.deadlineMs)
    .option('--max-batch-images <n>', 'most images per POST /v1/batch', positiveInteger, L.maxBatchImages)
    .option('--retry-after <s>', 'the Retry-After of a 503, in seconds', nonNegative, L.retryAfterSeconds)
    .option('--max-pixels <n>', 'resize larger images to at most this many pixels (default 2007040)', positiveInteger)
    .option('--drain-ms <n>', 'on SIGTERM, how long in-flight requests may still run', nonNegative, 10_000)
    .addOption(new Option('--log-level <level>', 'JSON log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'))
    .addHelpText('after', '\nExample: rex-omni serve --model IDEA-Research/Rex-Omni --port 8080\n         curl -H "Content-Type: image/jpeg" --data-binary @photo.jpg "http://127.0.0.1:8080/v1/detect?categories=person,cup"')
    .action(async (flags: ServeFlags) => {
      const token = flags.token ?? (process.env.REX_OMNI_TOKEN || undefined);
      try {
        checkBindAllowed(flags.host, token !== undefined, flags.insecurePublic ?? false);
      } catch (error) {
        throw new CliError((error as Error).message, EXIT_USAGE);
      }
      const dir = await resolveModel(flags.model, process.env, io.stderr);
      const loading = RexOmni.load(dir, {
        backend: flags.backend,
        maxActiveRequests: flags.maxActive,
        ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
      });
      const options: ServerOptions = {
        token,
        insecurePublic: flags.insecurePublic ?? false,
        cors: flags.cors?.includes('*') ? true : (flags.cors ?? false),
        logger: { level: flags.logLevel },
        drainMs: flags.drainMs,
        closeModel: true,
        maxActiveRequests: flags.maxActive,
        maxQueuedRequests: flags.maxQueue,
        maxBodyBytes: flags.maxBodyBytes,
        maxInputPixels: flags.maxInputPixels,
        maxCategories: flags.maxCategories,
        maxPhraseLength: flags.maxPhraseLength,
        maxNewTokens: flags.maxNewTokens,
        deadlineMs: flags.deadlineMs,
        maxBatchImages: Math.min(flags.maxBatchImages, flags.maxActive + flags.maxQueue),
        retryAfterSeconds: flags.retryAfter,
        runDefaults: flags.maxPixels !== undefined ? { maxPixels: flags.maxPixels } : {},
      };
      const server = await createServer(loading, options);
      const stop = new Promise<string>((resolve) => {
        process.once('SIGTERM', () => resolve('SIGTERM'));
        process.once('SIGINT', () => resolve('SIGINT'));
      });
      const address = await server.listen({ port: flags.port, host: flags.host });
      io.stderr.write(`rex-omni: listening on ${address}; loading ${dir}\n`);
      const loaded = await Promise.race([server.ready.then(() => 'ready' as const), stop]);
      if (loaded === 'ready') {
        io.stderr.write(`rex-omni: ready on ${address} (${(await loading).info().backend})\n`);
        io.stderr.write(`rex-omni: ${await stop}: draining in-flight requests (up to ${flags.drainMs} ms)\n`);
      } else {
        io.stderr.write(`rex-omni: ${loaded} while loading: shutting down\n`);
      }
      await server.close();
      io.stderr.write('rex-omni: stopped\n');
    });
}

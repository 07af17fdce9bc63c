// Opening a checkpoint: config.json plus safetensors weights, memory-mapped
// and shape-checked on a worker thread. The event loop keeps turning meanwhile.
import type { NativeCheckpoint, NativeModelConfig, NativeTensorInfo } from './addon-types.js';
import { invalidType, withCallerStack } from './errors.js';
import { loadAddon } from './native.js';

export type ModelConfig = NativeModelConfig;
export type TensorInfo = NativeTensorInfo;

export interface OpenCheckpointOptions {
  /** Also scan every weight for NaN and Inf (reads the whole file). Default false. */
  verify?: boolean;
}

/** An opened checkpoint. Close it (or `await using` it) to unmap the files. */
export class Checkpoint implements AsyncDisposable {
  readonly #native: NativeCheckpoint;

  private constructor(native: NativeCheckpoint) {
    this.#native = native;
  }

  /**
   * Opens the checkpoint in `dir`. Rejects with an Error whose `code` names the
   * failure (ERR_REX_NOT_FOUND, ERR_REX_CORRUPT_FILE, ERR_REX_BAD_HEADER,
   * ERR_REX_MISSING_TENSOR, ERR_REX_SHAPE_MISMATCH, ERR_REX_UNSUPPORTED_DTYPE,
   * ERR_REX_UNSUPPORTED_ARCHITECTURE) and whose message names file and tensor.
   */
  static async open(dir: string, options: OpenCheckpointOptions = {}): Promise<Checkpoint> {
    if (typeof dir !== 'string' || dir.length === 0) throw invalidType('Checkpoint.open(dir)', 'a non-empty directory path', dir);
    if (options === null || typeof options !== 'object') throw invalidType('Checkpoint.open(dir, options)', 'an options object', options);
    if (options.verify !== undefined && typeof options.verify !== 'boolean')
      throw invalidType('Checkpoint.open: options.verify', 'a boolean', options.verify);
    const callerStack = new Error().stack;
    const { addon } = loadAddon();
    try {
      return new Checkpoint(await addon.openCheckpoint(dir, { verify: options.verify ?? false }));
    } catch (error) {
      throw withCallerStack(error, callerStack);
    }
  }

  get config(): ModelConfig {
    return this.#native.config;
  }
  get dir(): string {
    return this.#native.dir;
  }
  /** "flat" for transformers 4.x tensor names, "nested" for model.visual.* / model.language_model.*. */
  get tensorLayout(): 'flat' | 'nested' {
    return this.#native.tensorLayout;
  }
  get tensorCount(): number {
    return this.#native.tensorCount;
  }
  get totalBytes(): number {
    return this.#native.totalBytes;
  }
  /** Canonical (transformers 4.x) tensor names, sorted. */
  tensorNames(): string[] {
    return this.#native.tensorNames();
  }
  tensorInfo(name: string): TensorInfo | null {
    if (typeof name !== 'string') throw invalidType('Checkpoint.tensorInfo(name)', 'a string', name);
    return this.#native.tensorInfo(name);
  }
  close(): void {
    this.#native.close();
  }
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}

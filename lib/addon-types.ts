// The native addon's surface, typed. It mirrors bindings/*.cpp one to one:
// nothing here adds behaviour. The public API in this folder wraps it.

export interface NativeTextConfig {
  numLayers: number;
  hiddenSize: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  rmsNormEps: number;
  ropeTheta: number;
  mropeSection: [number, number, number];
  tieWordEmbeddings: boolean;
  hiddenAct: string;
}

export interface NativeVisionConfig {
  depth: number;
  hiddenSize: number;
  numHeads: number;
  headDim: number;
  intermediateSize: number;
  outHiddenSize: number;
  inChannels: number;
  patchSize: number;
  temporalPatchSize: number;
  spatialMergeSize: number;
  windowSize: number;
  fullAttentionBlocks: number[];
  hiddenAct: string;
  rmsNormEps: number;
}

export interface NativeModelConfig {
  architecture: string;
  /** "flat" (transformers 4.x) or "nested" (text fields under text_config). */
  configLayout: 'flat' | 'nested';
  torchDtype: string;
  imageTokenId: number;
  visionStartTokenId: number;
  visionEndTokenId: number;
  text: NativeTextConfig;
  vision: NativeVisionConfig;
}

export interface NativeTensorInfo {
  name: string;
  file: string;
  dtype: 'BF16' | 'F16' | 'F32';
  shape: number[];
  bytes: number;
}

export interface NativeCheckpoint {
  readonly config: NativeModelConfig;
  readonly dir: string;
  /** "flat" (visual.*, model.*) or "nested" (model.visual.*, model.language_model.*). */
  readonly tensorLayout: 'flat' | 'nested';
  readonly tensorCount: number;
  readonly totalBytes: number;
  tensorNames(): string[];
  tensorInfo(name: string): NativeTensorInfo | null;
  close(): void;
}

export interface NativeBackendInfo {
  backend: 'cpu' | 'cuda';
  available: boolean;
  cpuThreads: number;
  error?: string;
  device?: {
    name: string;
    computeCapability: string;
    multiprocessors: number;
    totalMemory: number;
    driverVersion: number;
    runtimeVersion: number;
    cublasLt: boolean;
  };
}

export interface NativeAddon extends NativeAddonEngine {
  openCheckpoint(dir: string, options?: { verify?: boolean }): Promise<NativeCheckpoint>;
  backendInfo(): NativeBackendInfo;
}

export interface NativeSampling {
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  seed?: number | bigint;
}

export interface NativeRawImage {
  /** Interleaved 8-bit RGB, width * height * 3 bytes. */
  data: Uint8Array;
  width: number;
  height: number;
  minPixels?: number;
  maxPixels?: number;
}

export interface NativeGenerationRequest {
  promptIds: Int32Array | number[];
  image?: NativeRawImage;
  maxNewTokens?: number;
  stopTokenIds?: number[];
  sampling?: NativeSampling;
  /** JSON text of a compiled output grammar (lib/grammar); absent: unconstrained. */
  grammar?: string;
  /** Tokens the grammar forces skip their own decode step (default true); the output is the same. */
  jumpForward?: boolean;
  /** false: modelLogprobs are not needed (a device sampler may skip the full LM head; they may be NaN). Default true. */
  scores?: boolean;
  /** Milliseconds from submit (0 or absent: none); past it the request finishes with reason "deadline" (ERR_REX_DEADLINE). */
  deadlineMs?: number;
}

export interface NativeTimings {
  preprocessMs: number;
  visionMs: number;
  prefillMs: number;
  decodeMs: number;
}

export interface NativeFinishEvent {
  requestId: number;
  reason: 'eos' | 'length' | 'cancelled' | 'error' | 'deadline';
  /** With reason "error" (its code) and "deadline" (ERR_REX_DEADLINE). */
  error?: { message: string; code: string };
  timings: NativeTimings;
  promptTokens: number;
  imageTokens: number;
  /** Includes a stop token, which is also delivered as a token event. */
  generatedTokens: number;
  /** Decode forward passes that advanced the request (prefill not counted). */
  decodeSteps: number;
  /** Of those, tokens decoded inside other requests' prefill passes. */
  prefillRides: number;
  /** Generated tokens that jump-forward appended without a step of their own. */
  forcedTokens: number;
  /** Prompt tokens whose KV came from the image prefix cache (no vision encoder, no prefill for them). */
  cachedTokens: number;
  /** Times the request gave its KV back under memory pressure and resumed (reserveGeneration false). */
  preemptions: number;
}

/** One scheduler step: every request's new tokens, as columns, and the requests that finished. */
export interface NativeEngineEvents {
  tokens: {
    requestIds: Float64Array;
    tokens: Int32Array;
    /** Log-probability under the processed distribution the token was drawn from (penalty, mask, temperature, top-k/p). */
    logprobs: Float32Array;
    /** Log-probability under the raw model distribution (softmax of the logits, temperature 1). */
    modelLogprobs: Float32Array;
    steps: Int32Array;
  };
  finished: NativeFinishEvent[];
}

export interface NativeEngineOptions {
  backend?: 'cpu' | 'cuda';
  threads?: number;
  maxActiveRequests?: number;
  /** Requests waiting for admission at most (0 or absent: unbounded); a submit beyond it throws ERR_REX_QUEUE_FULL. */
  maxQueuedRequests?: number;
  /** The KV-cache budget in bytes (0 or absent: see gpuMemoryFraction and the default). */
  kvCacheBytes?: number;
  /** Cap on the device memory the process uses, as a fraction of the GPU's (0, 1]. */
  gpuMemoryFraction?: number;
  /** CUDA device index. */
  device?: number;
  /** CPU backend: bf16-rounded GEMM activations, as the CUDA backend holds them. */
  emulateBf16?: boolean;
  /** CUDA backend: every decode step on the row-invariant GEMV (same bits alone or batched). */
  batchInvariant?: boolean;
  /** The image prefix cache's share of the KV budget in bytes (absent: a quarter; 0: none). */
  prefixCacheBytes?: number;
  /** Prompts are prefilled in chunks of this many tokens between decode steps (0: whole). Default 2048. */
  prefillChunkTokens?: number;
  /** Running requests that decode inside each prefill pass, at most (0: off). Default 0. */
  prefillDecodeRows?: number;
  /** The images of requests admitted in one step go through the vision encoder in one pass, up to this many patches (0: one image per pass). Default 16384. */
  visionBatchPatches?: number;
  /** false: reserve only the KV a request holds and grow its slot, preempting the newest under pressure. Default true. */
  reserveGeneration?: boolean;
}

export interface NativeScoreRequest {
  promptIds: Int32Array | number[];
  image?: NativeRawImage;
  continuationIds: Int32Array | number[];
  topK?: number;
  fullLogits?: boolean;
}

export interface NativeScorePosition {
  /** The top-k ids by raw logit, highest first (ties: lower id first). */
  topIds: Int32Array;
  topLogits: Float32Array;
  /** log_softmax of the raw logits at the continuation's next id; null at the last position. */
  logprob: number | null;
  /** The whole raw logits row, with fullLogits. */
  logits?: Float32Array;
}

export interface NativeScoreResult {
  /** continuationIds.length + 1 entries: entry i is the distribution after prompt + continuation[0..i). */
  positions: NativeScorePosition[];
  promptTokens: number;
  imageTokens: number;
}

export interface NativeEngineInfo {
  backend: 'cpu' | 'cuda';
  device?: { name: string; computeCapability: string; totalMemory: number; driverVersion: number; runtimeVersion: number };
  threads?: number;
  memory: {
    weightsBytes: number;
    /** The KV pool's budget (0 on the CPU without one). */
    kvCacheBytes: number;
    kvCacheUsedBytes: number;
    workspaceBytes: number;
    /** The whole device's use, as the driver reports it (0 on the CPU). */
    deviceUsedBytes: number;
    /** The most this process's device buffers held at once. */
    peakBytes: number;
  };
  /** The image prefix cache (zeros without one). */
  prefixCache: {
    capacityBytes: number;
    /** KV its entries hold now (blocks that requests share count once, in kvCacheUsedBytes). */
    heldBytes: number;
    entries: number;
    hits: number;
    misses: number;
    insertions: number;
    evictions: number;
  };
}

export interface NativeEngine {
  readonly config: NativeModelConfig;
  /** Queues a request; returns its id. Events arrive through the createEngine callback. */
  submit(request: NativeGenerationRequest): number;
  cancel(requestId: number): void;
  /** Teacher-forced scoring, queued like any request. */
  score(request: NativeScoreRequest): Promise<NativeScoreResult>;
  /** The backend, its device and memory, as of the last scheduler step. */
  info(): NativeEngineInfo;
  /** Cancels what is in flight and stops the scheduler thread. */
  close(): Promise<void>;
}

export interface NativePreprocessed {
  resizedWidth: number;
  resizedHeight: number;
  gridT: number;
  gridH: number;
  gridW: number;
  resizedRgb: Uint8Array;
  pixelValues: Float32Array;
}

export interface NativeReferenceForward {
  visionTokens: number;
  vision: Float32Array;
  lastLogits: Float32Array;
  intermediates: Record<string, { shape: number[]; data: Float32Array }>;
}

export interface NativeAddonEngine {
  createEngine(dir: string, options: NativeEngineOptions, onEvents: (events: NativeEngineEvents) => void): Promise<NativeEngine>;
  /** The core's preprocessing; backend "cuda" runs the GPU kernels (CUDA build only). */
  preprocessImage(image: NativeRawImage, options?: { backend?: 'cpu' | 'cuda' }): Promise<NativePreprocessed>;
  /** The core's smart_resize (factor 28). Throws a TypeError for an aspect ratio over 200. */
  smartResize(height: number, width: number, minPixels: number, maxPixels: number): { height: number; width: number };
  referenceForward(
    dir: string,
    request: NativeGenerationRequest & { intermediates?: boolean; backend?: 'cpu' | 'cuda' },
  ): Promise<NativeReferenceForward>;
}

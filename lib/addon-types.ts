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

export interface NativeAddon {
  openCheckpoint(dir: string, options?: { verify?: boolean }): Promise<NativeCheckpoint>;
  backendInfo(): NativeBackendInfo;
}

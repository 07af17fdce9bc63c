// The terminal's view of `rex-omni info`: one labelled line per fact.
import type { NativeBackendInfo, NativeEngineInfo, NativeModelConfig } from '../../addon-types.js';

export interface InfoReport {
  addon: NativeBackendInfo & { path: string };
  model?: { dir: string; tensorLayout: string; tensors: number; bytes: number; config: NativeModelConfig };
  engine?: NativeEngineInfo;
}

/** CUDA's version integers (1000·major + 10·minor) as "major.minor". */
export function cudaVersion(version: number): string {
  return `${Math.floor(version / 1000)}.${Math.floor((version % 1000) / 10)}`;
}

const bytes = (n: number) => (n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`);

export function formatInfo(report: InfoReport): string {
  const { addon, model, engine } = report;
  const lines: [string, string][] = [
    ['native addon', addon.path],
    ['backend', `${addon.backend}${addon.available ? '' : ` (unavailable: ${addon.error ?? 'unknown'})`}, ${addon.cpuThreads} CPU threads`],
  ];
  if (addon.device) {
    const d = addon.device;
    lines.push(['GPU', `${d.name}, compute ${d.computeCapability}, ${d.multiprocessors} SMs, ${bytes(d.totalMemory)}, cuBLASLt ${d.cublasLt ? 'yes' : 'no'}`]);
    lines.push(['CUDA', `runtime ${cudaVersion(d.runtimeVersion)}, driver API ${cudaVersion(d.driverVersion)}`]);
  } else {
    lines.push(['GPU', addon.backend === 'cuda' ? 'none usable' : 'none (CPU build)']);
  }
  if (model) {
    const { text: t, vision: v } = model.config;
    lines.push(['model', `${model.dir} (${model.tensorLayout} layout, ${model.tensors} tensors, ${bytes(model.bytes)})`]);
    lines.push(['architecture', `${model.config.architecture}, ${model.config.torchDtype}`]);
    lines.push(['text', `${t.numLayers} layers, hidden ${t.hiddenSize}, ${t.numHeads} heads (${t.numKvHeads} key/value) of ${t.headDim}, MLP ${t.intermediateSize}, vocabulary ${t.vocabSize}`]);
    lines.push(['vision', `${v.depth} blocks, hidden ${v.hiddenSize}, ${v.numHeads} heads, MLP ${v.intermediateSize}, patch ${v.patchSize}, merge ${v.spatialMergeSize}`]);
  }
  if (engine) {
    const m = engine.memory;
    lines.push(['engine', `${engine.backend}${engine.device ? ` on ${engine.device.name}` : ''}, weights ${bytes(m.weightsBytes)}, KV cache ${bytes(m.kvCacheBytes)}`]);
  }
  const width = Math.max(...lines.map(([label]) => label.length));
  return lines.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n');
}

// rex-omni: Rex-Omni for Node.js. Public entry point.
export { Checkpoint } from './checkpoint.js';
export type { ModelConfig, OpenCheckpointOptions, TensorInfo } from './checkpoint.js';
export { RexOmniError } from './errors.js';
export { RexTokenizer } from './tokenizer.js';
export { buildChatText, buildPromptIds } from './chat.js';
export { loadAddon } from './native.js';
export * from './tasks/index.js';
export { loadImage, DEFAULT_MAX_INPUT_PIXELS } from './image/index.js';
export type { DecodedImage, ImageInput, LoadImageOptions, RawImage } from './image/index.js';
export { parseOutput, StreamingOutputParser } from './parse/index.js';
export type { ParseEvent, ParseResult, ReferenceEntry, ReferenceGroups, Unparsed } from './parse/index.js';
export type {
  Prediction, PredictionKind, BoxPrediction, PointPrediction, PolygonPrediction, KeypointsPrediction, Keypoint, XY, XYXY,
} from './predictions.js';
export { Engine } from './engine.js';
export type {
  EngineEvent, EngineInfo, EngineOptions, FinishEvent, ScorePosition, ScoreRequest, ScoreResult, TokenEvent, TokenGeneration, TokenRequest, Timings,
} from './engine.js';
export { RexOmni } from './rex-omni.js';
export type { LoadOptions, RexOmniEvent, RexOmniResult, RunTimings } from './rex-omni.js';
export { RexImage } from './image-handle.js';
export type { RunOptions, SamplingOptions } from './run-options.js';
export { drawPredictions } from './draw/render.js';
export { overlaySvg } from './draw/overlay.js';
export { phraseColour } from './draw/colours.js';
export { createServer, DEFAULT_SERVER_LIMITS, TASK_ROUTE_NAMES } from './server/index.js';
export type { ListenOptions, RexOmniServer, ServerLimits, ServerOptions } from './server/index.js';

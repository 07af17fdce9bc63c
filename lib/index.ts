// rex-omni: Rex-Omni for Node.js. Public entry point.
export { Checkpoint } from './checkpoint.js';
export type { ModelConfig, OpenCheckpointOptions, TensorInfo } from './checkpoint.js';
export { RexOmniError } from './errors.js';
export { RexTokenizer } from './tokenizer.js';
export { buildChatText, buildPromptIds } from './chat.js';
export { loadAddon } from './native.js';

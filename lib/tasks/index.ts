// Rex-Omni tasks: specs, validation, prompts and output formats.
export * from './spec.js';
export { KEYPOINT_NAMES, DEFAULT_KEYPOINT_CATEGORIES } from './keypoints.js';
export { validateTask, validateTaskName, validateImageSize } from './validate.js';
export { buildTaskPrompt, visualPromptJson, pixelToBin } from './prompt.js';
export { TASK_OUTPUT, allowedPhrases } from './output-kind.js';
export type { PhrasePolicy, TaskOutputFormat } from './output-kind.js';

// Parsing Rex-Omni output text: whole (parseOutput) or streaming.
export { parseOutput } from './parse.js';
export { StreamingOutputParser } from './streaming.js';
export { binToPixel } from './coords.js';
export type { ParseEvent, ParseResult, ReferenceEntry, ReferenceGroups, Unparsed } from './types.js';

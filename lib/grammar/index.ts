// The output-grammar compiler: task + tokenizer + options -> GrammarJson,
// plain data mirroring rex::OutputGrammar (native/sampling/grammar.h).
export {
  compileGrammar,
  encodeBetween,
  END_OF_VOCAB,
  DEFAULT_MAX_PHRASE_TOKENS,
  ITEM_SEPARATORS,
  GROUP_SEPARATORS,
  isJsonSafeText,
  KEYPOINT_CLOSING_CHARS,
} from './compile.js';
export type { GrammarTokenizer } from './compile.js';
export { GRAMMAR_FIELDS } from './types.js';
export type { GrammarJson, GrammarOptions, GrammarTaskInfo, CoordinateRunJson, IdRangeJson } from './types.js';

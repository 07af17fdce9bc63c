// The compiled output grammar as plain, JSON-serialisable data: exactly the
// C++ struct rex::OutputGrammar (native/sampling/grammar.h, "FIELD LIST"),
// field for field and in the same snake_case, so the binding can copy it
// across without interpretation. Token ids only; no strings, no callbacks.

/** A half-open id range [begin, end). */
export type IdRangeJson = [begin: number, end: number];

/** Free mode: after a trigger, `coords` coordinates, each preceded by `separator`. */
export interface CoordinateRunJson {
  triggers: number[][];
  separator: number[];
  coords: number;
  ordered_box: boolean;
  optional: boolean;
}

/** Mirrors rex::OutputGrammar. Keep the two in step (see grammar.h). */
export interface GrammarJson {
  /** "groups": every task but keypoint; "keypoint_json": keypoint; "free": coordinate runs in free text (kept for the core's tests). */
  mode: 'groups' | 'free' | 'keypoint_json';
  coord_first: number;
  coord_count: number;
  stop_ids: number[];
  ref_start: number;
  ref_end: number;
  box_start: number;
  box_end: number;
  none_tokens: number[];
  item_separators: number[][];
  group_separators: number[][];
  arity: 'point' | 'box' | 'polygon';
  max_item_coords: number;
  phrase_mode: 'fixed' | 'free';
  phrases: number[][];
  free_text_banned: IdRangeJson[];
  max_phrase_tokens: number;
  max_predictions: number;
  forbid_duplicate_boxes: boolean;
  runs: CoordinateRunJson[];
  coords_only_in_runs: boolean;
  /**
   * keypoint_json: every ordinary token whose decoded text is JSON-safe (letters, digits, space,
   * newline, tab, { } : , " ` _ - '), as one string of "ID:TEXT|" entries (one JSON string
   * parses far faster than 80,000 pairs; TEXT never holds '|'); else "".
   */
  json_vocab: string;
}

/** The field names, in the order of the C++ struct (the binding's checklist). */
export const GRAMMAR_FIELDS = [
  'mode',
  'coord_first',
  'coord_count',
  'stop_ids',
  'ref_start',
  'ref_end',
  'box_start',
  'box_end',
  'none_tokens',
  'item_separators',
  'group_separators',
  'arity',
  'max_item_coords',
  'phrase_mode',
  'phrases',
  'free_text_banned',
  'max_phrase_tokens',
  'max_predictions',
  'forbid_duplicate_boxes',
  'runs',
  'coords_only_in_runs',
  'json_vocab',
] as const satisfies readonly (keyof GrammarJson)[];

/**
 * What the compiler needs to know about a task. Structurally what
 * lib/tasks' TASK_OUTPUT[task] gives (syntax, kind), plus the phrases:
 * the requested categories where they are a hard constraint (detection,
 * pointing), null for free text (OCR, GUI, visual prompting, no categories).
 */
export interface GrammarTaskInfo {
  syntax: 'groups' | 'keypoint-json';
  kind: 'box' | 'point' | 'polygon' | 'keypoints';
  phrases: readonly string[] | null;
}

export interface GrammarOptions {
  /** Stop after this many predictions (items; keypoint mode: instances). 0 or absent: no cap. */
  maxPredictions?: number;
  /** Forbid an exact duplicate box (or point) within one phrase. Default false. */
  forbidDuplicateBoxes?: boolean;
  /** Free-text phrases (OCR, GUI, visual prompting): at most this many tokens. Default 128; 0: no cap. */
  maxPhraseTokens?: number;
  /** Polygons: at most this many coordinates (even, >= 6). Default 0: no cap. */
  maxPolygonCoords?: number;
}

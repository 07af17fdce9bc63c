// The Rex-Omni task specifications: one variant per reference task, as a
// discriminated union on `task`. Referring, layout and affordance prompts are
// detection / pointing with free-form phrases (REXOMNI.md "Prompt").

/** A box [x0, y0, x1, y1] in pixels of the original image. */
export type PixelBox = [x0: number, y0: number, x1: number, y1: number];

export const TASK_NAMES = [
  'detection',
  'pointing',
  'visual_prompting',
  'keypoint',
  'ocr_box',
  'ocr_polygon',
  'gui_grounding',
  'gui_pointing',
] as const;
export type TaskName = (typeof TASK_NAMES)[number];

export const KEYPOINT_TYPES = ['person', 'animal'] as const;
export type KeypointType = (typeof KEYPOINT_TYPES)[number];

export const OCR_GRANULARITIES = ['word', 'text line'] as const;
export type OcrGranularity = (typeof OCR_GRANULARITIES)[number];

/** Boxes around categories (or referring / layout phrases). */
export interface DetectionTask {
  task: 'detection';
  categories: string[];
}
/** Points on categories (or affordance phrases). */
export interface PointingTask {
  task: 'pointing';
  categories: string[];
}
/** Boxes around everything similar to the reference boxes. */
export interface VisualPromptingTask {
  task: 'visual_prompting';
  /** Reference boxes in pixels of the original image. */
  boxes: PixelBox[];
}
/** A box plus 17 named keypoints per instance, as JSON. */
export interface KeypointTask {
  task: 'keypoint';
  keypointType: KeypointType;
  /** What to look for; defaults to [keypointType]. */
  categories?: string[];
}
/** Text boxes with their recognised text. */
export interface OcrBoxTask {
  task: 'ocr_box';
  granularity: OcrGranularity;
}
/** Text polygons with their recognised text. */
export interface OcrPolygonTask {
  task: 'ocr_polygon';
  granularity: OcrGranularity;
}
/** The box of one GUI element described in words. */
export interface GuiGroundingTask {
  task: 'gui_grounding';
  element: string;
}
/** A point on one GUI element described in words. */
export interface GuiPointingTask {
  task: 'gui_pointing';
  element: string;
}

export type TaskSpec =
  | DetectionTask
  | PointingTask
  | VisualPromptingTask
  | KeypointTask
  | OcrBoxTask
  | OcrPolygonTask
  | GuiGroundingTask
  | GuiPointingTask;

/** A checked task: defaults filled in, arrays copied, everything frozen. */
export type ValidatedTask = Readonly<
  | DetectionTask
  | PointingTask
  | VisualPromptingTask
  | (KeypointTask & { categories: string[] })
  | OcrBoxTask
  | OcrPolygonTask
  | GuiGroundingTask
  | GuiPointingTask
>;

/** Width and height of the original image, in pixels. */
export interface ImageSize {
  width: number;
  height: number;
}

// The public prediction types: what a Rex-Omni output turns into. Every
// prediction keeps both the model's quantized bins (0…999) and the pixel
// coordinates in the ORIGINAL image (bin / 999 · W for x, · H for y).

/** A pixel position [x, y] in the original image. */
export type XY = [x: number, y: number];
/** A box [x0, y0, x1, y1] in pixels of the original image. */
export type XYXY = [x0: number, y0: number, x1: number, y1: number];

interface PredictionBase {
  /** The category (detection, pointing, keypoint), the recognised text (OCR) or the model's phrase. */
  phrase: string;
  /** Confidence, when a caller computes one. The model itself gives none. */
  score?: number;
}

export interface BoxPrediction extends PredictionBase {
  kind: 'box';
  coords: XYXY;
  bins: XYXY;
}

export interface PointPrediction extends PredictionBase {
  kind: 'point';
  coords: XY;
  bins: XY;
}

export interface PolygonPrediction extends PredictionBase {
  kind: 'polygon';
  /** The vertices, in output order. */
  coords: XY[];
  bins: XY[];
}

/** One keypoint: its position, or null where the model wrote "unvisible". */
export type Keypoint = { coords: XY; bins: XY } | null;

export interface KeypointsPrediction extends PredictionBase {
  kind: 'keypoints';
  /** The instance key of the model's JSON ("person1", …). `phrase` is its leading letters ("person"). */
  instanceId: string;
  /** The instance's bounding box. */
  coords: XYXY;
  bins: XYXY;
  /** Keypoint name → position, in the model's order. */
  keypoints: Record<string, Keypoint>;
}

export type Prediction = BoxPrediction | PointPrediction | PolygonPrediction | KeypointsPrediction;
export type PredictionKind = Prediction['kind'];

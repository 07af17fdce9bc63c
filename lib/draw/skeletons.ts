// The limbs drawn between keypoints, as pairs of keypoint names (the names of
// lib/tasks/keypoints.ts).
// - person: COCO's 19 limb pairs (the COCO keypoint annotations' "skeleton").
// - animal: the 17 pairs the reference wrapper's visualiser (RexOmniVisualize)
//   draws for the model's AP-10K-style names. Unlike AP-10K's own skeleton it
//   hangs the hips from the neck, not from the root of the tail.
import type { KeypointType } from '../tasks/index.js';

export type Limb = readonly [from: string, to: string];

export const PERSON_LIMBS: readonly Limb[] = [
  ['left ankle', 'left knee'],
  ['left knee', 'left hip'],
  ['right ankle', 'right knee'],
  ['right knee', 'right hip'],
  ['left hip', 'right hip'],
  ['left shoulder', 'left hip'],
  ['right shoulder', 'right hip'],
  ['left shoulder', 'right shoulder'],
  ['left shoulder', 'left elbow'],
  ['right shoulder', 'right elbow'],
  ['left elbow', 'left wrist'],
  ['right elbow', 'right wrist'],
  ['left eye', 'right eye'],
  ['nose', 'left eye'],
  ['nose', 'right eye'],
  ['left eye', 'left ear'],
  ['right eye', 'right ear'],
  ['left ear', 'left shoulder'],
  ['right ear', 'right shoulder'],
];

export const ANIMAL_LIMBS: readonly Limb[] = [
  ['left eye', 'right eye'],
  ['left eye', 'nose'],
  ['right eye', 'nose'],
  ['nose', 'neck'],
  ['neck', 'left shoulder'],
  ['neck', 'right shoulder'],
  ['left shoulder', 'left elbow'],
  ['right shoulder', 'right elbow'],
  ['left elbow', 'left front paw'],
  ['right elbow', 'right front paw'],
  ['neck', 'left hip'],
  ['neck', 'right hip'],
  ['left hip', 'left knee'],
  ['right hip', 'right knee'],
  ['left knee', 'left back paw'],
  ['right knee', 'right back paw'],
  ['neck', 'root of tail'],
];

/** The limbs for an instance's keypoint names: the animal set when it has animal-only names, else COCO's. */
export function limbsFor(keypointNames: readonly string[]): readonly Limb[] {
  return keypointSkeletonType(keypointNames) === 'animal' ? ANIMAL_LIMBS : PERSON_LIMBS;
}

function keypointSkeletonType(names: readonly string[]): KeypointType {
  return names.includes('root of tail') || names.includes('neck') ? 'animal' : 'person';
}

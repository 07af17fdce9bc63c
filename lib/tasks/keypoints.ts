// The 17 keypoint names of each keypoint type, in the reference's order
// (REXOMNI.md "Prompt"); the prompt lists them joined with ", ".
import type { KeypointType } from './spec.js';

export const KEYPOINT_NAMES: Readonly<Record<KeypointType, readonly string[]>> = Object.freeze({
  person: Object.freeze([
    'nose',
    'left eye',
    'right eye',
    'left ear',
    'right ear',
    'left shoulder',
    'right shoulder',
    'left elbow',
    'right elbow',
    'left wrist',
    'right wrist',
    'left hip',
    'right hip',
    'left knee',
    'right knee',
    'left ankle',
    'right ankle',
  ]),
  animal: Object.freeze([
    'left eye',
    'right eye',
    'nose',
    'neck',
    'root of tail',
    'left shoulder',
    'left elbow',
    'left front paw',
    'right shoulder',
    'right elbow',
    'right front paw',
    'left hip',
    'left knee',
    'left back paw',
    'right hip',
    'right knee',
    'right back paw',
  ]),
});

/** The categories a keypoint task looks for when none are given. */
export const DEFAULT_KEYPOINT_CATEGORIES: Readonly<Record<KeypointType, readonly string[]>> = Object.freeze({
  person: Object.freeze(['person']),
  animal: Object.freeze(['animal']),
});

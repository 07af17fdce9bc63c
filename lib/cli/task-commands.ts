// The eight task commands, one per task of the API (lib/tasks): each one's
// name, summary, own options and how its options become a TaskSpec.
import { Command, Option } from 'commander';

import type { TaskName, TaskSpec } from '../tasks/index.js';
import { boxList, commaList } from './option-parsers.js';

export interface TaskCommand {
  name: string;
  task: TaskName;
  summary: string;
  example: string;
  addOptions(command: Command): Command;
  spec(options: Record<string, unknown>): TaskSpec;
}

const categories = (required: boolean, description: string) => {
  const option = new Option('-c, --categories <a,b>', description).argParser(commaList);
  return required ? option.makeOptionMandatory() : option;
};
const element = () => new Option('-e, --element <text>', 'the GUI element, described in words').makeOptionMandatory();
const granularity = () => new Option('-g, --granularity <unit>', 'what each result is').choices(['word', 'text line']).default('text line');

export const TASK_COMMANDS: readonly TaskCommand[] = [
  {
    name: 'detect',
    task: 'detection',
    summary: 'boxes around the categories (also referring and layout phrases)',
    example: 'rex-omni detect photo.jpg --categories person,cup',
    addOptions: (c) => c.addOption(categories(true, 'what to detect, comma-separated')),
    spec: (o) => ({ task: 'detection', categories: o.categories as string[] }),
  },
  {
    name: 'point',
    task: 'pointing',
    summary: 'one point on each instance of the categories (also affordance phrases)',
    example: 'rex-omni point photo.jpg --categories "cup handle"',
    addOptions: (c) => c.addOption(categories(true, 'what to point at, comma-separated')),
    spec: (o) => ({ task: 'pointing', categories: o.categories as string[] }),
  },
  {
    name: 'visual-prompt',
    task: 'visual_prompting',
    summary: 'boxes around everything like the reference boxes',
    example: 'rex-omni visual-prompt photo.jpg --boxes "10,20,110,200;300,40,380,160"',
    addOptions: (c) =>
      c.addOption(new Option('-b, --boxes <x0,y0,x1,y1;…>', 'reference boxes in pixels, separated by ";"').argParser(boxList).makeOptionMandatory()),
    spec: (o) => ({ task: 'visual_prompting', boxes: o.boxes as [number, number, number, number][] }),
  },
  {
    name: 'keypoints',
    task: 'keypoint',
    summary: 'a box and 17 keypoints for each person or animal',
    example: 'rex-omni keypoints photo.jpg --keypoints person',
    addOptions: (c) =>
      c
        .addOption(new Option('-k, --keypoints <type>', 'which 17 keypoints').choices(['person', 'animal']).default('person'))
        .addOption(categories(false, 'what to look for (default: the keypoint type)')),
    spec: (o) => ({
      task: 'keypoint',
      keypointType: o.keypoints as 'person' | 'animal',
      ...(o.categories ? { categories: o.categories as string[] } : {}),
    }),
  },
  {
    name: 'ocr-boxes',
    task: 'ocr_box',
    summary: 'text as boxes, with the recognised text',
    example: 'rex-omni ocr-boxes scan.png --granularity word',
    addOptions: (c) => c.addOption(granularity()),
    spec: (o) => ({ task: 'ocr_box', granularity: o.granularity as 'word' | 'text line' }),
  },
  {
    name: 'ocr-polygons',
    task: 'ocr_polygon',
    summary: 'text as polygons, with the recognised text',
    example: 'rex-omni ocr-polygons sign.jpg',
    addOptions: (c) => c.addOption(granularity()),
    spec: (o) => ({ task: 'ocr_polygon', granularity: o.granularity as 'word' | 'text line' }),
  },
  {
    name: 'gui-ground',
    task: 'gui_grounding',
    summary: 'the box of a GUI element',
    example: 'rex-omni gui-ground screen.png --element "the search button"',
    addOptions: (c) => c.addOption(element()),
    spec: (o) => ({ task: 'gui_grounding', element: o.element as string }),
  },
  {
    name: 'gui-point',
    task: 'gui_pointing',
    summary: 'a point on a GUI element',
    example: 'rex-omni gui-point screen.png --element "the search button"',
    addOptions: (c) => c.addOption(element()),
    spec: (o) => ({ task: 'gui_pointing', element: o.element as string }),
  },
];

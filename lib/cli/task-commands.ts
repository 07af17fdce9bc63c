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

/** detect and point: phrases from --categories. */
function categoryCommand(name: string, task: 'detection' | 'pointing', summary: string, example: string, what: string): TaskCommand {
  return {
    name,
    task,
    summary,
    example,
    addOptions: (c) => c.addOption(categories(true, `what to ${what}, comma-separated`)),
    spec: (o) => ({ task, categories: o.categories as string[] }),
  };
}

/** ocr-boxes and ocr-polygons: --granularity. */
function ocrCommand(name: string, task: 'ocr_box' | 'ocr_polygon', shape: string, example: string): TaskCommand {
  return {
    name,
    task,
    summary: `text as ${shape}, with the recognised text`,
    example,
    addOptions: (c) => c.addOption(new Option('-g, --granularity <unit>', 'what each result is').choices(['word', 'text line']).default('text line')),
    spec: (o) => ({ task, granularity: o.granularity as 'word' | 'text line' }),
  };
}

/** gui-ground and gui-point: --element. */
function guiCommand(name: string, task: 'gui_grounding' | 'gui_pointing', summary: string): TaskCommand {
  return {
    name,
    task,
    summary,
    example: `rex-omni ${name} screen.png --element "the search button"`,
    addOptions: (c) => c.addOption(new Option('-e, --element <text>', 'the GUI element, described in words').makeOptionMandatory()),
    spec: (o) => ({ task, element: o.element as string }),
  };
}

export const TASK_COMMANDS: readonly TaskCommand[] = [
  categoryCommand('detect', 'detection', 'boxes around the categories (also referring and layout phrases)', 'rex-omni detect photo.jpg --categories person,cup', 'detect'),
  categoryCommand('point', 'pointing', 'one point on each instance of the categories (also affordance phrases)', 'rex-omni point photo.jpg --categories "cup handle"', 'point at'),
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
  ocrCommand('ocr-boxes', 'ocr_box', 'boxes', 'rex-omni ocr-boxes scan.png --granularity word'),
  ocrCommand('ocr-polygons', 'ocr_polygon', 'polygons', 'rex-omni ocr-polygons sign.jpg'),
  guiCommand('gui-ground', 'gui_grounding', 'the box of a GUI element'),
  guiCommand('gui-point', 'gui_pointing', 'a point on a GUI element'),
];

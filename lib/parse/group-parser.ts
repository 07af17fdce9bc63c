// The parser for the group syntax of every task but keypoint:
//   <|object_ref_start|>PHRASE<|object_ref_end|><|box_start|>ITEM,ITEM…<|box_end|>, …<|im_end|>
// It accepts what the reference's regular expressions accept: items split by
// "," (so ", " too), `None`, 2 / 4 / even>4 coordinates (point / box /
// polygon), stray text inside an item ignored, text after <|im_end|> ignored,
// and a final group cut off before <|box_end|> still parsed. A box or point is
// emitted the moment its last coordinate arrives (4 / 2, by the task's kind);
// should more coordinates follow, it is retracted and the item re-read.
// Deliberate differences, on text the model does not write: a group cut off
// and followed by a new <|object_ref_start|> ends there (the reference's regex
// folds the next group's coordinates into it), and a newline inside a
// coordinate list is accepted (the reference's `.` drops that group).
import type { Prediction, XY, XYXY } from '../predictions.js';
import type { ImageSize } from '../tasks/spec.js';
import { binToPixel, boxFromBins, pointFromBins } from './coords.js';
import { Lexer, type Lexeme } from './lexer.js';
import { isPyBlank, pyStrip } from './text.js';
import type { ParseSink } from './types.js';

const LEADING = /^[\s,]+/;
const TRAILING = /[\s,]+$/;
const trimSeparators = (text: string): string => text.replace(LEADING, '').replace(TRAILING, '');

type State = 'outside' | 'phrase' | 'afterPhrase' | 'items' | 'skip' | 'done';

export const REASONS = {
  outside: 'text outside any <|object_ref_start|>…<|box_end|> group',
  emptyPhrase: 'a group with an empty phrase',
  phraseLt: "a phrase containing '<' (the reference's [^<]+ does not match it)",
  noRefEnd: 'a phrase without <|object_ref_end|>',
  noBoxStart: 'expected <|box_start|> after <|object_ref_end|>',
  truncated: 'output cut off before <|box_start|>',
  itemText: 'text inside a coordinate list (ignored)',
  itemCount: 'expected 2 (point), 4 (box) or an even number above 4 (polygon) coordinates',
} as const;

export class GroupParser {
  readonly #sink: ParseSink;
  readonly #image: ImageSize;
  /** Coordinates per item at which to emit early (4 box, 2 point), or null. */
  readonly #early: number | null;
  readonly #lexer = new Lexer();
  #state: State = 'outside';
  /** Raw text of the current group, or of the text being skipped. */
  #raw = '';
  #phrase = '';
  #bins: number[] = [];
  #itemRaw = '';
  #itemText = '';
  #emitted: Prediction | null = null;
  #complete = false;
  /** Why the text in #raw will be reported, should it be. */
  #pendingReason: string = REASONS.outside;

  constructor(sink: ParseSink, image: ImageSize, early: number | null) {
    this.#sink = sink;
    this.#image = image;
    this.#early = early;
  }

  get complete(): boolean {
    return this.#complete;
  }

  push(chunk: string): void {
    for (const lexeme of this.#lexer.push(chunk)) this.#take(lexeme);
  }

  finish(): void {
    for (const lexeme of this.#lexer.push('', true)) this.#take(lexeme);
    switch (this.#state) {
      case 'outside':
      case 'skip':
        this.#flush();
        break;
      case 'phrase':
      case 'afterPhrase':
        this.#fail(REASONS.truncated);
        this.#flush();
        break;
      case 'items':
        this.#closeGroup();
        break;
      case 'done':
        break;
    }
    this.#state = 'done';
  }

  #take(lex: Lexeme): void {
    const special = lex.kind === 'special' ? lex.name : null;
    if (this.#state === 'done') return;
    if (special === 'im_end') {
      if (this.#state === 'items') this.#closeGroup();
      else if (this.#state === 'phrase' || this.#state === 'afterPhrase') this.#fail(REASONS.truncated);
      this.#flush();
      this.#state = 'done';
      this.#complete = true;
      return;
    }
    if (special === 'object_ref_start') {
      if (this.#state === 'items') this.#closeGroup();
      else if (this.#state === 'phrase') this.#fail(REASONS.noRefEnd);
      else if (this.#state === 'afterPhrase') this.#fail(REASONS.noBoxStart);
      this.#flush();
      this.#state = 'phrase';
      this.#raw = lex.text;
      this.#phrase = '';
      return;
    }
    switch (this.#state) {
      case 'outside':
        // Padding tokens are expected between groups; separators are trimmed off at #flush.
        if (special === 'endoftext') return;
        this.#pendingReason = REASONS.outside;
        this.#raw += lex.text;
        return;
      case 'skip':
        this.#raw += lex.text;
        return;
      case 'phrase':
        this.#raw += lex.text;
        if (special === 'object_ref_end') {
          if (this.#phrase === '') this.#skip(REASONS.emptyPhrase);
          else this.#state = 'afterPhrase';
        } else if (lex.kind === 'text' || lex.kind === 'comma') {
          if (lex.text.includes('<')) this.#skip(REASONS.phraseLt);
          else this.#phrase += lex.text;
        } else {
          this.#skip(REASONS.phraseLt);
        }
        return;
      case 'afterPhrase':
        this.#raw += lex.text;
        if (special === 'box_start') {
          this.#state = 'items';
          this.#bins = [];
          this.#itemRaw = '';
          this.#itemText = '';
          this.#emitted = null;
        } else if (!(lex.kind === 'text' && isPyBlank(lex.text))) {
          this.#skip(REASONS.noBoxStart);
        }
        return;
      case 'items':
        this.#raw += lex.text;
        if (special === 'box_end') {
          this.#closeGroup();
          this.#state = 'outside';
        } else if (lex.kind === 'comma') {
          this.#closeItem();
        } else if (lex.kind === 'coord') {
          this.#itemRaw += lex.text;
          this.#addBin(lex.bin);
        } else {
          this.#itemRaw += lex.text;
          this.#itemText += lex.text;
        }
        return;
    }
  }

  /** Starts skipping: the current group's text becomes unparsed (with what follows, up to the next group). */
  #skip(reason: string): void {
    this.#pendingReason = reason;
    this.#state = 'skip';
  }

  /** The current group failed at its end (no text follows in it). */
  #fail(reason: string): void {
    this.#pendingReason = reason;
  }

  /** Reports the text in #raw, less the group separators (", ", newlines) around it. */
  #flush(): void {
    const text = this.#pendingReason === REASONS.outside ? trimSeparators(this.#raw) : this.#raw.replace(TRAILING, '');
    if (text !== '') this.#sink.unparsed(text, this.#pendingReason);
    this.#raw = '';
    this.#pendingReason = REASONS.outside;
    this.#state = 'outside';
  }

  #addBin(bin: number): void {
    this.#bins.push(bin);
    const n = this.#bins.length;
    if (this.#early !== null && n === this.#early) {
      this.#emitted = this.#item();
      if (this.#emitted) this.#sink.emit(this.#emitted);
    } else if (this.#emitted && n === (this.#early ?? 0) + 1) {
      this.#sink.retract(this.#emitted);
      this.#emitted = null;
    }
  }

  /** The prediction the current item's coordinates make, or null. */
  #item(): Prediction | null {
    const b = this.#bins;
    const phrase = pyStrip(this.#phrase);
    if (b.length === 2) {
      const bins: XY = [b[0], b[1]];
      return { kind: 'point', phrase, coords: pointFromBins(bins, this.#image), bins };
    }
    if (b.length === 4) {
      const bins: XYXY = [b[0], b[1], b[2], b[3]];
      return { kind: 'box', phrase, coords: boxFromBins(bins, this.#image), bins };
    }
    if (b.length > 4 && b.length % 2 === 0) {
      const bins: XY[] = [];
      for (let i = 0; i < b.length; i += 2) bins.push([b[i], b[i + 1]]);
      const coords = bins.map(([x, y]): XY => [binToPixel(x, this.#image.width), binToPixel(y, this.#image.height)]);
      return { kind: 'polygon', phrase, coords, bins };
    }
    return null;
  }

  #closeItem(): void {
    const leftover = pyStrip(this.#itemText.split('None').join(''));
    if (leftover !== '') this.#sink.unparsed(this.#itemText, REASONS.itemText);
    if (!this.#emitted && this.#bins.length > 0) {
      const prediction = this.#item();
      if (prediction) this.#sink.emit(prediction);
      else this.#sink.unparsed(this.#itemRaw, `${REASONS.itemCount} but got ${this.#bins.length}`);
    }
    this.#bins = [];
    this.#itemRaw = '';
    this.#itemText = '';
    this.#emitted = null;
  }

  #closeGroup(): void {
    this.#closeItem();
    this.#sink.group(pyStrip(this.#phrase));
    this.#raw = '';
    this.#state = 'outside';
  }
}

// An incremental lexer for the group syntax: special tokens `<|name|>`,
// coordinates `<digits>`, commas and other text. Text may arrive in any
// chunks: a possible token prefix at the end (`<`, `<12`, `<|box_e`) is held
// back until it completes or the stream ends.

export type Lexeme =
  | { kind: 'special'; name: string; text: string }
  | { kind: 'coord'; bin: number; text: string }
  | { kind: 'comma'; text: string }
  | { kind: 'text'; text: string };

const SPECIAL = /<\|([A-Za-z0-9_]+)\|>/y;
const COORD = /<(\d+)>/y;
const PARTIAL = /<(?:\|[A-Za-z0-9_]*\|?|\d*)$/y;

function matchAt(re: RegExp, text: string, at: number): RegExpExecArray | null {
  re.lastIndex = at;
  return re.exec(text);
}

export class Lexer {
  #pending = '';

  /** Lexes `chunk` after what came before; `final` releases any held-back tail as text. */
  push(chunk: string, final = false): Lexeme[] {
    const text = this.#pending + chunk;
    this.#pending = '';
    const out: Lexeme[] = [];
    let i = 0;
    while (i < text.length) {
      const ch = text[i];
      if (ch === ',') {
        out.push({ kind: 'comma', text: ',' });
        i += 1;
      } else if (ch === '<') {
        const special = matchAt(SPECIAL, text, i);
        const coord = special ? null : matchAt(COORD, text, i);
        if (special) {
          out.push({ kind: 'special', name: special[1], text: special[0] });
          i += special[0].length;
        } else if (coord) {
          out.push({ kind: 'coord', bin: Number.parseInt(coord[1], 10), text: coord[0] });
          i += coord[0].length;
        } else if (!final && matchAt(PARTIAL, text, i)) {
          this.#pending = text.slice(i);
          break;
        } else {
          out.push({ kind: 'text', text: '<' });
          i += 1;
        }
      } else {
        let j = i + 1;
        while (j < text.length && text[j] !== '<' && text[j] !== ',') j++;
        out.push({ kind: 'text', text: text.slice(i, j) });
        i = j;
      }
    }
    return out;
  }
}

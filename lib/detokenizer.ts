// Token ids → text, one token at a time, exactly as the tokenizer's decoder
// would produce for the whole sequence: byte-level BPE tokens are mapped back
// to their bytes (GPT-2's byte↔unicode table), and a streaming UTF-8 decoder
// holds back a character split across tokens. Added tokens (<|im_end|>,
// <12>, …) are printable ASCII, which the table maps to themselves.
import type { RexTokenizer } from './tokenizer.js';

/** Byte-level BPE's printable stand-in for each byte, inverted: char code → byte. */
function byteOfCharTable(): Map<number, number> {
  const table = new Map<number, number>();
  let next = 256;
  for (let byte = 0; byte < 256; ++byte) {
    const printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || (byte >= 174 && byte <= 255);
    table.set(printable ? byte : next++, byte);
  }
  return table;
}

const BYTE_OF_CHAR = byteOfCharTable();

/**
 * The bytes a vocabulary entry stands for: byte-level BPE characters mapped
 * back through the table; anything outside it (added tokens' own text) as UTF-8.
 */
export function tokenContentBytes(content: string): Uint8Array {
  const out: number[] = [];
  for (const char of content) {
    const byte = BYTE_OF_CHAR.get(char.codePointAt(0)!);
    if (byte !== undefined) out.push(byte);
    else out.push(...new TextEncoder().encode(char));
  }
  return Uint8Array.from(out);
}

export class StreamingDetokenizer {
  readonly #tokenizer: Pick<RexTokenizer, 'tokenContent'>;
  readonly #utf8 = new TextDecoder('utf-8');
  readonly #bytesOfToken = new Map<number, Uint8Array>();

  constructor(tokenizer: Pick<RexTokenizer, 'tokenContent'>) {
    this.#tokenizer = tokenizer;
  }

  /** The text this token adds (possibly empty while a character is incomplete). */
  push(id: number): string {
    return this.#utf8.decode(this.#bytes(id), { stream: true });
  }

  /** Whatever an incomplete character left behind, as U+FFFD. */
  flush(): string {
    return this.#utf8.decode();
  }

  #bytes(id: number): Uint8Array {
    let bytes = this.#bytesOfToken.get(id);
    if (bytes) return bytes;
    bytes = tokenContentBytes(this.#tokenizer.tokenContent(id) ?? '');
    this.#bytesOfToken.set(id, bytes);
    return bytes;
  }
}

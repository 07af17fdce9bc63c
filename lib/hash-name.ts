// FNV-1a over UTF-16 code units: a stable 32-bit number from a name. It seeds
// the tiny checkpoint's tensors and picks each phrase's drawing colour.

export function hashName(name: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

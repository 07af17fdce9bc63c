// How many monospace terminal cells a text takes: wide East Asian characters
// and emoji take two, everything else one. For the terminal table and for
// sizing labels drawn in a monospace font.

export function displayWidth(text: string): number {
  let count = 0;
  for (const char of text) count += isWide(char.codePointAt(0)!) ? 2 : 1;
  return count;
}

function isWide(codePoint: number): boolean {
  return (
    (codePoint >= 0x1100 && codePoint <= 0x115f) ||
    (codePoint >= 0x2e80 && codePoint <= 0xa4cf) ||
    (codePoint >= 0xac00 && codePoint <= 0xd7a3) ||
    (codePoint >= 0xf900 && codePoint <= 0xfaff) ||
    (codePoint >= 0xfe30 && codePoint <= 0xfe4f) ||
    (codePoint >= 0xff00 && codePoint <= 0xff60) ||
    (codePoint >= 0x1f300 && codePoint <= 0x1faff) ||
    (codePoint >= 0x20000 && codePoint <= 0x3fffd)
  );
}

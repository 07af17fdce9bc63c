// Python's notion of whitespace (str.isspace / str.strip / re's \s), which the
// reference parser's phrase handling uses; JavaScript's trim differs slightly.
const PY_SPACE = /^[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$/;
const PY_STRIP = /^[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;

/** Whether `text` is empty or only whitespace, by Python's definition. */
export function isPyBlank(text: string): boolean {
  return PY_SPACE.test(text);
}

/** Python's str.strip(). */
export function pyStrip(text: string): string {
  return text.replace(PY_STRIP, '');
}

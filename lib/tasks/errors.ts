// "expected … but got …" errors whose "got" part is written by the caller
// (a box, a pair of values), with the codes of lib/errors.ts.
export function typeErrorWith(what: string, expected: string, got: string): TypeError {
  return Object.assign(new TypeError(`${what}: expected ${expected} but got ${got}`), { code: 'ERR_INVALID_ARG_TYPE' });
}

export function rangeErrorWith(what: string, expected: string, got: string): RangeError {
  return Object.assign(new RangeError(`${what}: expected ${expected} but got ${got}`), { code: 'ERR_OUT_OF_RANGE' });
}

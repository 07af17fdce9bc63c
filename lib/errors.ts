// Errors raised by rex-omni. Native failures arrive as Errors with a `code`
// (see native/common/status.cpp); bad input is rejected in TypeScript with a
// TypeError or RangeError whose message reads "expected … but got …".

/** An error from the runtime, with a stable machine-readable code. */
export class RexOmniError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RexOmniError';
    this.code = code;
  }
}

/** Describes a value for an "expected … but got …" message. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return value.length > 60 ? `a string of length ${value.length}` : JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === 'function') return 'a function';
  const name = (value as object).constructor?.name;
  return name && name !== 'Object' ? `an instance of ${name}` : 'an object';
}

/** A TypeError with code ERR_INVALID_ARG_TYPE: "<what>: expected <expected> but got <got>". */
export function typeErrorWith(what: string, expected: string, got: string): TypeError {
  return Object.assign(new TypeError(`${what}: expected ${expected} but got ${got}`), { code: 'ERR_INVALID_ARG_TYPE' });
}

/** A RangeError with code ERR_OUT_OF_RANGE: "<what>: expected <expected> but got <got>". */
export function rangeErrorWith(what: string, expected: string, got: string): RangeError {
  return Object.assign(new RangeError(`${what}: expected ${expected} but got ${got}`), { code: 'ERR_OUT_OF_RANGE' });
}

/** typeErrorWith, describing the value that was given. */
export function invalidType(what: string, expected: string, value: unknown): TypeError {
  return typeErrorWith(what, expected, describeValue(value));
}

/** rangeErrorWith, describing the value that was given. */
export function outOfRange(what: string, expected: string, value: unknown): RangeError {
  return rangeErrorWith(what, expected, describeValue(value));
}

/**
 * Gives a native error the caller's stack (captured before the native call,
 * since the hop to a worker thread loses it). Class, message and code stay.
 */
export function withCallerStack(error: unknown, callerStack: string | undefined): unknown {
  if (error instanceof Error && callerStack) {
    error.stack = `${error.name}: ${error.message}\n${callerStack.split('\n').slice(1).join('\n')}`;
  }
  return error;
}

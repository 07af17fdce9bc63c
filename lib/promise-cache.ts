// A small least-recently-used map of promised values, for work a service
// repeats on every request with the same few inputs: a task's output
// grammar, a task prompt's token ids (tokenizing the 80-category COCO
// prompt takes 1-3 ms, most of what the JS layer adds to a request's time
// to first token). A failed promise is dropped, so the next call tries again.

export class PromiseCache<V> {
  readonly #entries = new Map<string, Promise<V>>();

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw Object.assign(new RangeError(`PromiseCache(capacity): expected a positive integer but got ${capacity}`), {
        code: 'ERR_OUT_OF_RANGE',
      });
    }
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The value for `key`: the kept promise (now the newest), or `make()`'s, kept while the capacity allows. */
  get(key: string, make: () => Promise<V>): Promise<V> {
    const kept = this.#entries.get(key);
    if (kept) {
      this.#entries.delete(key);
      this.#entries.set(key, kept);
      return kept;
    }
    const made = make();
    this.#entries.set(key, made);
    if (this.#entries.size > this.capacity) this.#entries.delete(this.#entries.keys().next().value!);
    made.catch(() => {
      if (this.#entries.get(key) === made) this.#entries.delete(key);
    });
    return made;
  }
}

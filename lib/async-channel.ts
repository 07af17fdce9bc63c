// A single-consumer async queue: the event pump pushes, one async iterator
// pulls; ends after close() or fail(). push() never waits and never drops
// (before close): the producer (the engine's event pump) must not block on a
// slow reader. It has no bound of its own; an engine stream's is its
// request's (at most maxNewTokens tokens and one finish, lib/engine.ts).
export class AsyncChannel<T> implements AsyncIterableIterator<T> {
  readonly #items: T[] = [];
  #waiting: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
  #closed = false;
  #error: { value: unknown } | undefined;

  push(item: T): void {
    if (this.#closed) return;
    if (this.#waiting) {
      const waiter = this.#waiting;
      this.#waiting = undefined;
      waiter.resolve({ value: item, done: false });
    } else {
      this.#items.push(item);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#settleWaiter();
  }

  fail(error: unknown): void {
    if (this.#closed) return;
    this.#error = { value: error };
    this.#closed = true;
    this.#settleWaiter();
  }

  next(): Promise<IteratorResult<T>> {
    if (this.#items.length > 0) return Promise.resolve({ value: this.#items.shift()!, done: false });
    if (this.#error) return Promise.reject(this.#error.value);
    if (this.#closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<T>> {
    this.#items.length = 0;
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }

  #settleWaiter(): void {
    const waiter = this.#waiting;
    if (!waiter) return;
    this.#waiting = undefined;
    if (this.#error) waiter.reject(this.#error.value);
    else waiter.resolve({ value: undefined, done: true });
  }
}

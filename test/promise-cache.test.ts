import { describe, expect, it, vi } from 'vitest';

import { PromiseCache } from '../lib/promise-cache.js';

describe('PromiseCache', () => {
  it('makes a value once per key and hands the same promise back', async () => {
    const cache = new PromiseCache<number>(4);
    const make = vi.fn(async () => 42);
    const first = cache.get('a', make);
    const second = cache.get('a', make);
    expect(second).toBe(first);
    expect(await second).toBe(42);
    expect(make).toHaveBeenCalledTimes(1);
  });

  it('keeps the most recently used keys: a hit makes its key the newest', async () => {
    const cache = new PromiseCache<string>(2);
    const make = vi.fn(async () => 'v');
    await cache.get('a', make);
    await cache.get('b', make);
    await cache.get('a', make);  // a hit: 'b' is now the oldest
    await cache.get('c', make);  // evicts 'b'
    expect(cache.size).toBe(2);
    expect(make).toHaveBeenCalledTimes(3);
    await cache.get('a', make);
    expect(make).toHaveBeenCalledTimes(3);
    await cache.get('b', make);
    expect(make).toHaveBeenCalledTimes(4);
  });

  it('drops a failed promise, so the next call makes it again', async () => {
    const cache = new PromiseCache<number>(4);
    let calls = 0;
    const make = async () => {
      if (++calls === 1) throw new Error('first try fails');
      return 7;
    };
    await expect(cache.get('k', make)).rejects.toThrow('first try fails');
    expect(cache.size).toBe(0);
    expect(await cache.get('k', make)).toBe(7);
    expect(calls).toBe(2);
  });

  it('refuses a capacity that is not a positive integer', () => {
    expect(() => new PromiseCache(0)).toThrow('PromiseCache(capacity): expected a positive integer but got 0');
    expect(() => new PromiseCache(1.5)).toThrow(RangeError);
  });
});

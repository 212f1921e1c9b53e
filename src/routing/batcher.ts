/**
 * Collects what concurrent callers add within one turn of the microtask queue and hands it over
 * as one batch: a hundred bot handlers appending at once cost one Redis script call and one
 * INSERT instead of a hundred of each. A lone caller waits for nothing but a microtask.
 */
export class Batcher<T, R> {
  #pending: { item: T; resolve: (result: R) => void; reject: (error: unknown) => void }[] = [];

  constructor(
    private readonly flush: (items: T[]) => Promise<R[]>,
    private readonly maxBatch = 500,
  ) {}

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const size = this.#pending.push({ item, resolve, reject });
      if (size === 1) queueMicrotask(() => this.#drain());
      else if (size >= this.maxBatch) this.#drain();
    });
  }

  #drain(): void {
    const batch = this.#pending;
    if (batch.length === 0) return;
    this.#pending = [];
    this.flush(batch.map((entry) => entry.item)).then(
      (results) => {
        for (const [i, entry] of batch.entries()) entry.resolve(results[i] as R);
      },
      (error: unknown) => {
        for (const entry of batch) entry.reject(error);
      },
    );
  }
}

/**
 * An unbounded async queue with one consumer: producers `push`, the consumer iterates.
 * Iteration ends when the channel is closed or the signal aborts.
 */
export class Channel<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private wake: (() => void) | undefined;
  private closed = false;

  constructor(signal?: AbortSignal) {
    signal?.addEventListener('abort', () => this.close(), { once: true });
    if (signal?.aborted) this.closed = true;
  }

  push(item: T): void {
    if (this.closed) return;
    this.items.push(item);
    this.wake?.();
  }

  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    try {
      for (;;) {
        const item = this.items.shift();
        if (item !== undefined) {
          yield item;
          continue;
        }
        if (this.closed) return;
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
      }
    } finally {
      this.closed = true;
    }
  }
}

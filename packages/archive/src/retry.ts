import { setTimeout as sleep } from 'node:timers/promises';
import { HeadstartError, isHeadstartError } from '@headstart/errors';

export interface RetryOptions {
  /** Attempts in all, the first included (default 6). */
  readonly attempts?: number;
  /** First back-off, ms (default 100); doubles each time, with full jitter. */
  readonly baseDelayMs?: number;
  /** Back-off ceiling, ms (default 5000). */
  readonly maxDelayMs?: number;
  readonly signal?: AbortSignal;
  /** Called before each wait, e.g. to count retries. */
  readonly onRetry?: (err: HeadstartError, attempt: number, delayMs: number) => void;
}

/**
 * Runs `fn` until it succeeds, retrying only transient store failures (ARCHIVE_STORE_IO:
 * throttling, 5xx, timeouts, network) with exponential back-off and full jitter, so many
 * uploaders that were throttled together do not come back together. Anything else
 * (not found, denied, corrupt, cancelled) is thrown at once: retrying cannot fix it.
 */
export async function withRetry<T>(fn: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const attempts = options.attempts ?? 6;
  const base = options.baseDelayMs ?? 100;
  const max = options.maxDelayMs ?? 5000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!isHeadstartError(err, 'ARCHIVE_STORE_IO') || attempt >= attempts || options.signal?.aborted) throw err;
      const delay = Math.round(Math.random() * Math.min(max, base * 2 ** (attempt - 1)));
      options.onRetry?.(err, attempt, delay);
      try {
        await sleep(delay, undefined, { signal: options.signal });
      } catch (cause) {
        throw new HeadstartError('ARCHIVE_ABORTED', 'cancelled while waiting to retry', { cause });
      }
    }
  }
}

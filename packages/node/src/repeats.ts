/**
 * A failure that repeats, said once: a link to a site that is down is retried every few
 * seconds for as long as it is down, and a line per retry buried everything else in the log
 * (two helpers' runs: a warning every 5 s per volume, for hours, for a peer that was away or
 * fenced). The first occurrence is said, then a reminder every REMIND_MS with how many and
 * since when, and the end of it (the link is up again) with how long it lasted.
 */
export const REMIND_MS = 5 * 60_000;

interface Open {
  readonly what: string;
  readonly since: number;
  count: number;
  told: number;
  /** When the failure began, whatever its kind since (a peer refused, then fenced): the outage ended() reports. */
  readonly downSince: number;
  /** Failures since downSince, of every kind. */
  failures: number;
}

export class Repeats {
  private readonly open = new Map<string, Open>();

  constructor(private readonly remindMs = REMIND_MS) {}

  /**
   * `key` failed with `what` at `now`: whether to log it (the first of its kind, another kind
   * than the last, or a reminder), how many times it failed that way and since when.
   */
  failed(key: string, what: string, now: number): { log: boolean; count: number; since: number } {
    const o = this.open.get(key);
    if (o === undefined || o.what !== what) {
      // Another kind is said at once, but the outage goes on: it began at the first failure.
      this.open.set(key, { what, since: now, count: 1, told: now, downSince: o?.downSince ?? now, failures: (o?.failures ?? 0) + 1 });
      return { log: true, count: 1, since: now };
    }
    o.count++;
    o.failures++;
    const remind = now - o.told >= this.remindMs;
    if (remind) o.told = now;
    return { log: remind, count: o.count, since: o.since };
  }

  /** `key` works again: how long and how many times it had failed, of any kind, since its first failure (null if it had not). */
  ended(key: string, now: number): { count: number; forMs: number } | null {
    const o = this.open.get(key);
    if (o === undefined) return null;
    this.open.delete(key);
    return { count: o.failures, forMs: now - o.downSince };
  }
}

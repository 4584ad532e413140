/**
 * Timers for far-off times. setTimeout keeps a delay in a signed 32-bit number of ms: past
 * 2^31 - 1 ms (24.8 days) Node fires it after 1 ms instead (with a TimeoutOverflowWarning).
 * A yearly cron schedule or a monthly verification would then run over and over at once.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Runs `fn` at epoch ms `at`, however far ahead, in steps setTimeout can take; `set` receives each timer in force (to clear it). */
export function armAt(at: number, fn: () => void, set: (timer: NodeJS.Timeout) => void): void {
  const delay = at - Date.now();
  if (delay > MAX_TIMER_MS) set(setTimeout(() => armAt(at, fn, set), MAX_TIMER_MS));
  else set(setTimeout(fn, Math.max(0, delay)));
}

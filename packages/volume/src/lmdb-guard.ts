/**
 * lmdb-js (3.5) rejects, when an asynchronous commit fails (a full disk, an I/O error),
 * promises that no caller can handle: besides each caller's own write promise (which
 * rejects too, and is where we report the failure), an internal `commitError` promise and
 * the event-turn batch's own promise (kriszyp/lmdb-js#368, open). Under Node's default
 * `--unhandled-rejections=throw` they kill the process, whatever the caller does with its
 * own error: a node whose disk filled up died at the next snapshot close instead of
 * refusing writes with ENOSPC and recovering once space was freed.
 *
 * `guardLmdbCommitRejections()` installs, once per process, a handler that drops exactly
 * those rejections (errors created inside lmdb's own modules) and rethrows any other, which
 * keeps Node's default (an uncaught exception) for everything else.
 */
let installed = false;

/** Whether `reason` is an error lmdb-js itself created (its stack's first frame is in lmdb). */
export function isLmdbInternalRejection(reason: unknown): boolean {
  if (!(reason instanceof Error) || typeof reason.stack !== 'string') return false;
  const frame = /\n\s+at .*/.exec(reason.stack)?.[0] ?? '';
  return /[\\/]node_modules[\\/]lmdb[\\/]/.test(frame);
}

export function guardLmdbCommitRejections(): void {
  if (installed) return;
  installed = true;
  process.on('unhandledRejection', (reason) => {
    if (isLmdbInternalRejection(reason)) return;
    throw reason;
  });
}

/**
 * A listener that cannot start (NBD, peers, admin, metrics, dashboard) is an operator's
 * configuration problem: it is reported as the key to change and why, in words, instead of
 * a system error's stack.
 */
import { HeadstartError, isHeadstartError } from '@headstart/errors';

const WHY: Record<string, string> = {
  EADDRINUSE: 'the address is in use (another program, or another headstart node, listens there)',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'this machine has no such address',
  ENOTFOUND: 'no such host name',
};

function systemError(err: unknown): { code: string; syscall?: unknown } | undefined {
  for (let e = err as { code?: unknown; syscall?: unknown; cause?: unknown } | undefined, depth = 0; e !== undefined && e !== null && depth < 4; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code)) return { code: e.code, syscall: e.syscall };
  }
  return undefined;
}

/** The calls that fail when an address cannot be listened on (not a file's: a TLS key, a volume's directory). */
const LISTEN_CALLS = new Set(['listen', 'bind', 'getaddrinfo']);

/** Runs `start`; a system error from it becomes CONFIG_INVALID naming `key` and the address. */
export async function listening<T>(key: string, host: string, port: number, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (err) {
    const sys = systemError(err);
    // An error already said in words about something else (a TLS file that cannot be read, a
    // volume's directory) keeps its message: not "cannot listen: ENOENT" from its cause.
    if (sys === undefined || (isHeadstartError(err) && !LISTEN_CALLS.has(String(sys.syscall)))) throw err;
    const code = sys.code;
    throw new HeadstartError('CONFIG_INVALID', `${key} ${host.includes(':') ? `[${host}]` : host}:${port}: cannot listen: ${WHY[code] ?? code}`, { cause: err });
  }
}

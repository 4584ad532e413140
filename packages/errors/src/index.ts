/**
 * Every error headstart raises on purpose carries a stable string `code` (match on it,
 * never on message text), a message for the operator, a hint of what to do next, and
 * whether retrying the same call can help. Protocol layers map codes to their own
 * error numbers (NBD errno, WebSocket close code) through this table, so one condition
 * looks the same everywhere. docs/errors.md lists the codes.
 */

export interface ErrorSpec {
  /** What to tell the operator to do. */
  readonly hint: string;
  /** Whether the same call may succeed if simply retried later. */
  readonly retryable: boolean;
  /** The NBD error number a client sees (NBD spec: EPERM 1, EIO 5, ENOMEM 12, EINVAL 22, ENOSPC 28). */
  readonly nbdErrno: number;
  /** The WebSocket close code a peer sees if the condition ends a link (4000-4999 are ours). */
  readonly wsClose: number;
}

const EPERM = 1;
const EIO = 5;
const EINVAL = 22;
const ENOSPC = 28;

export const ERRORS = {
  // --- volume ---
  VOLUME_OUT_OF_RANGE: { hint: 'Keep offset + length within the volume size.', retryable: false, nbdErrno: EINVAL, wsClose: 4400 },
  VOLUME_BAD_REQUEST: { hint: 'Offsets and lengths must be non-negative integers.', retryable: false, nbdErrno: EINVAL, wsClose: 4400 },
  VOLUME_READ_ONLY: { hint: 'This volume is a replica; promote it to write to it.', retryable: false, nbdErrno: EPERM, wsClose: 4403 },
  VOLUME_CLOSED: { hint: 'The volume was closed; open it again.', retryable: false, nbdErrno: EIO, wsClose: 4500 },
  VOLUME_NOT_FOUND: { hint: 'Check the volume directory, or create the volume with `headstart init`.', retryable: false, nbdErrno: EIO, wsClose: 4404 },
  VOLUME_EXISTS: { hint: 'Choose another directory, or open the existing volume.', retryable: false, nbdErrno: EIO, wsClose: 4409 },
  VOLUME_CORRUPT: { hint: 'The volume metadata is damaged; restore it from a replica or the archive.', retryable: false, nbdErrno: EIO, wsClose: 4500 },
  VOLUME_LOCKED: { hint: 'Another process has this volume open; stop it first.', retryable: true, nbdErrno: EIO, wsClose: 4409 },
  VOLUME_BAD_GEOMETRY: { hint: 'Block size must be a power of two from 512 B to 1 MiB, and the size a positive multiple of it.', retryable: false, nbdErrno: EINVAL, wsClose: 4400 },
  VOLUME_NO_SPACE: { hint: 'Free space on the volume\'s file system; nothing was written.', retryable: true, nbdErrno: ENOSPC, wsClose: 4507 },
  VOLUME_IO: { hint: 'The disk under the volume failed, or the system refused the access (the message says: permissions, a read-only mount); check the system log.', retryable: true, nbdErrno: EIO, wsClose: 4500 },
  VOLUME_BETWEEN_POINTS: { hint: 'The replica is writing a committed point into its image and a read would see two points at once; reads resume when the commit finishes (if it cannot, the node log says why: a full disk most often).', retryable: true, nbdErrno: EIO, wsClose: 4503 },
  SNAPSHOT_UNKNOWN: { hint: 'That snapshot point does not exist or is no longer kept.', retryable: false, nbdErrno: EINVAL, wsClose: 4404 },
  SNAPSHOT_RELEASED: { hint: 'Every sink acknowledged that point, so its old content is no longer kept.', retryable: false, nbdErrno: EINVAL, wsClose: 4410 },
  SINK_UNKNOWN: { hint: 'Add the sink first (headstart pair / archive config).', retryable: false, nbdErrno: EINVAL, wsClose: 4404 },
  SINK_BAD_ACK: { hint: 'A sink can only acknowledge closed points, in order.', retryable: false, nbdErrno: EINVAL, wsClose: 4409 },
  // --- nbd ---
  NBD_BAD_HANDSHAKE: { hint: 'The client spoke something other than fixed-newstyle NBD; point a real NBD client (qemu, nbd-client, libnbd) at this port.', retryable: false, nbdErrno: EINVAL, wsClose: 4400 },
  NBD_BAD_REQUEST: { hint: 'The client sent a malformed NBD request (bad magic or flags); only that connection was closed.', retryable: false, nbdErrno: EINVAL, wsClose: 4400 },
  NBD_REQUEST_TOO_LARGE: { hint: 'Keep each NBD request within the advertised maximum block size (32 MiB by default).', retryable: false, nbdErrno: EINVAL, wsClose: 4400 },
  NBD_EXPORT_UNKNOWN: { hint: 'Ask for an export the server lists (nbdinfo --list nbd://HOST:PORT).', retryable: false, nbdErrno: EINVAL, wsClose: 4404 },
  NBD_EXPORT_EXISTS: { hint: 'Remove the existing export of that name first, or pick another name.', retryable: false, nbdErrno: EINVAL, wsClose: 4409 },
  NBD_SHUTDOWN: { hint: 'The NBD server or this export is shutting down; reconnect once it is back.', retryable: true, nbdErrno: 108, wsClose: 4503 },
  // --- protocol / link / replication ---
  LINK_MALFORMED_FRAME: { hint: 'The peer sent bytes that are not a valid headstart frame; check that both ends run compatible versions.', retryable: false, nbdErrno: EIO, wsClose: 4600 },
  LINK_FRAME_TOO_LARGE: { hint: 'The peer sent a frame above the protocol limit; check both ends run compatible versions.', retryable: false, nbdErrno: EIO, wsClose: 4601 },
  LINK_UNKNOWN_MESSAGE: { hint: 'The peer sent a message type this version does not know; upgrade the older node.', retryable: false, nbdErrno: EIO, wsClose: 4602 },
  LINK_OUT_OF_ORDER: { hint: 'The peer sent a message that is not allowed at this point of the stream; the link restarts and resumes.', retryable: true, nbdErrno: EIO, wsClose: 4603 },
  LINK_AUTH_FAILED: { hint: 'Both nodes must be paired with the same secret (headstart pair); a replayed handshake is refused.', retryable: false, nbdErrno: EPERM, wsClose: 4604 },
  LINK_VERSION_MISMATCH: { hint: 'The two nodes share no protocol version; upgrade the older node.', retryable: false, nbdErrno: EIO, wsClose: 4605 },
  LINK_TIMEOUT: { hint: 'The peer did not answer in time; check the network between the sites.', retryable: true, nbdErrno: EIO, wsClose: 4606 },
  LINK_CLOSED: { hint: 'The connection to the peer was lost; replication resumes when it is back.', retryable: true, nbdErrno: EIO, wsClose: 4607 },
  LINK_TLS_CONFIG: { hint: 'Configure both a certificate and a key file (PEM), readable by headstart.', retryable: false, nbdErrno: EINVAL, wsClose: 4608 },
  REPL_DIVERGED: { hint: 'The replica holds a history this source did not write and was not promoted over (a primary made anew, its data lost?): nothing is sent. Promote the replica if it holds the only copy, or remove its volume to copy this one anew.', retryable: false, nbdErrno: EIO, wsClose: 4615 },
  REPL_EPOCH_FENCED: { hint: 'Two sites disagree on which is primary: the one with the lower epoch is stale (the other was promoted later). Demote the stale one on its site and it resyncs by checksum; never resync without checking which holds the data you want.', retryable: false, nbdErrno: EPERM, wsClose: 4610 },
  REPL_VOLUME_MISMATCH: { hint: 'Source and replica volumes differ in id, size, block size or consistency group; pair the right volumes, with the same group on both sites.', retryable: false, nbdErrno: EINVAL, wsClose: 4611 },
  REPL_UNKNOWN_VOLUME: { hint: 'The replica node has no volume with that id; create the replica volume first.', retryable: false, nbdErrno: EINVAL, wsClose: 4612 },
  REPL_DIGEST_MISMATCH: { hint: 'The staged snapshot did not match the source digest; it is discarded and sent again.', retryable: true, nbdErrno: EIO, wsClose: 4613 },
  REPL_BLOCK_CORRUPT: { hint: 'A block arrived with a wrong checksum (corruption on the wire or in memory); the link restarts and resends it.', retryable: true, nbdErrno: EIO, wsClose: 4614 },
  REPL_INTERNAL: { hint: 'An unexpected failure ended the link; it reconnects and resumes. Report it with the log if it repeats.', retryable: true, nbdErrno: EIO, wsClose: 4617 },
  REPL_TARGET_BUSY: { hint: 'The replica node is promoting, demoting or exporting this volume; the source retries and resumes when it is done.', retryable: true, nbdErrno: EIO, wsClose: 4618 },
  REPL_STOPPED: { hint: 'Replication was stopped on this node.', retryable: false, nbdErrno: EIO, wsClose: 4616 },
  // --- archive ---
  ARCHIVE_NOT_FOUND: { hint: 'The object or snapshot point is not in the archive; list the archive to see what it holds.', retryable: false, nbdErrno: EIO, wsClose: 4404 },
  ARCHIVE_STORE_IO: { hint: 'The object store failed or throttled (5xx, timeout, network); it is retried with backoff, check the store if it persists.', retryable: true, nbdErrno: EIO, wsClose: 4503 },
  ARCHIVE_STORE_DENIED: { hint: 'The object store refused the request; check the credentials, bucket name and permissions.', retryable: false, nbdErrno: EPERM, wsClose: 4403 },
  ARCHIVE_NO_SPACE: { hint: 'Free space where the archive directory lives; nothing half-written was kept.', retryable: true, nbdErrno: ENOSPC, wsClose: 4507 },
  ARCHIVE_BAD_KEY: { hint: 'Object keys are relative paths of [A-Za-z0-9._-] segments separated by "/".', retryable: false, nbdErrno: EINVAL, wsClose: 4400 },
  ARCHIVE_CORRUPT: { hint: 'An archive object failed its checksum or shape check; run `headstart archive verify` and re-archive from the source if needed.', retryable: false, nbdErrno: EIO, wsClose: 4500 },
  ARCHIVE_CONFIG: { hint: 'Fix the named archive option (store, chunk size, retention, bucket), or name a restore target that does not exist yet.', retryable: false, nbdErrno: EINVAL, wsClose: 4400 },
  ARCHIVE_GEOMETRY: { hint: 'The archive holds another volume under this id (another size or block size, or another history: a second node or a re-created volume archiving there, or points of a former primary that this site never received); archive under another prefix or volume id, or move those points aside.', retryable: false, nbdErrno: EINVAL, wsClose: 4409 },
  ARCHIVE_ABORTED: { hint: 'The archive operation was cancelled; run it again to finish the job.', retryable: true, nbdErrno: EIO, wsClose: 4500 },
  // --- planner / traces ---
  TRACE_FORMAT_UNKNOWN: { hint: 'Name the format with --format (vscsi, msr, spc, fiu, blkparse, alibaba, headstart), or check that the file is a block trace.', retryable: false, nbdErrno: EINVAL, wsClose: 4400 },
  TRACE_MALFORMED: { hint: 'Fix or drop the named line of the trace, or pass --lenient to skip malformed records (they are counted and shown).', retryable: false, nbdErrno: EINVAL, wsClose: 4400 },
  TRACE_IO: { hint: 'Check that the trace file exists and is readable, and that its directory is writable for recording.', retryable: true, nbdErrno: EIO, wsClose: 4500 },
  PLANNER_BAD_INPUT: { hint: 'Planner events need finite, non-negative times, offsets and lengths, in time order, inside the volume.', retryable: false, nbdErrno: EINVAL, wsClose: 4400 },
  PLANNER_BAD_STATE: { hint: 'The planner\'s saved model is damaged or from another version or volume; the planner starts cold and saves a fresh one at the next close.', retryable: false, nbdErrno: EINVAL, wsClose: 4400 },
  PLANNER_BAD_OPTION: { hint: 'Fix the named planner option (K > 0, L finite, 0 < PT <= 1, block size a power of two).', retryable: false, nbdErrno: EINVAL, wsClose: 4400 },
  // --- config / cli / node ---
  NBD_CLIENT_PROTOCOL: { hint: 'The NBD server broke the protocol or went away; check its address, export name and log.', retryable: true, nbdErrno: EIO, wsClose: 4500 },
  NBD_CLIENT_REQUEST_FAILED: { hint: 'The NBD server refused the request; the errno says why.', retryable: false, nbdErrno: EIO, wsClose: 4500 },
  NODE_NO_SUCH_VOLUME: { hint: 'Check the volume name against `headstart status`.', retryable: false, nbdErrno: EINVAL, wsClose: 4404 },
  NODE_ALREADY_PRIMARY: { hint: 'Nothing to do: this volume is already writable here.', retryable: false, nbdErrno: EINVAL, wsClose: 4409 },
  NODE_ALREADY_REPLICA: { hint: 'Nothing to do: this volume is already a replica here.', retryable: false, nbdErrno: EINVAL, wsClose: 4409 },
  NODE_PRIMARY_REACHABLE: { hint: 'Demote the old primary first (headstart demote on its site), or pass --force if that site is lost.', retryable: true, nbdErrno: EPERM, wsClose: 4409 },
  NODE_GROUP_TORN: { hint: 'The volumes of the group hold different points (a close failed on one of them) or roles here; wait for the next point to commit on all of them, or promote with --allow-torn if the source site is gone.', retryable: true, nbdErrno: EPERM, wsClose: 4409 },
  NODE_UNREACHABLE: { hint: 'Start the node (headstart serve) or check --config and listen.admin.', retryable: true, nbdErrno: EIO, wsClose: 4503 },
  NODE_ADMIN_DENIED: { hint: 'The admin token (in the node\'s data directory) did not match.', retryable: false, nbdErrno: EPERM, wsClose: 4401 },
  VERIFY_SHAPE: { hint: 'Source and replica differ in size or range layout; check that you compare the right volume.', retryable: false, nbdErrno: 22, wsClose: 4400 },
  VERIFY_BUSY: { hint: 'A verification of this volume is already running; wait for it or end it with `headstart verify VOLUME --end`.', retryable: true, nbdErrno: 16, wsClose: 4409 },
  VERIFY_ENDED: { hint: 'The verification was ended (`headstart verify --end`, a role change, its caller gone, its hold not renewed for 10 min, a node restart) before its comparison was done; run it again.', retryable: true, nbdErrno: 4, wsClose: 4409 },
  EXPORT_EXISTS: { hint: 'Choose another output path, or pass --force to replace the file.', retryable: false, nbdErrno: 17, wsClose: 4409 },
  EXPORT_OUTPUT: { hint: 'Check the output path: its directory must exist and be writable, with room for the image (sparse: the data written, not the volume size).', retryable: false, nbdErrno: EIO, wsClose: 4409 },
  CONFIG_INVALID: { hint: 'Fix the named configuration key or command-line flag.', retryable: false, nbdErrno: EINVAL, wsClose: 4400 },
  // --- dashboard ---
  DASHBOARD_UNPROTECTED: { hint: 'Give the dashboard a token (dashboard.token / --dashboard-token), or bind it to 127.0.0.1 or ::1 only.', retryable: false, nbdErrno: EPERM, wsClose: 4403 },
  DASHBOARD_BAD_OPTION: { hint: 'Fix the named dashboard option (host, port 0-65535, a non-empty token).', retryable: false, nbdErrno: EINVAL, wsClose: 4400 },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export class HeadstartError extends Error {
  readonly code: ErrorCode;
  readonly hint: string;
  readonly retryable: boolean;
  readonly nbdErrno: number;
  readonly wsClose: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    const spec: ErrorSpec = ERRORS[code];
    this.name = 'HeadstartError';
    this.code = code;
    this.hint = spec.hint;
    this.retryable = spec.retryable;
    this.nbdErrno = spec.nbdErrno;
    this.wsClose = spec.wsClose;
    this.details = options?.details;
  }

  /** One line for logs and CLI output: code, message, hint. */
  describe(): string {
    return `${this.code}: ${this.message} (hint: ${this.hint})`;
  }
}

export function isHeadstartError(err: unknown, code?: ErrorCode): err is HeadstartError {
  return err instanceof HeadstartError && (code === undefined || err.code === code);
}

/** Maps an OS error from the file system to our codes (ENOSPC must stay distinguishable). */
export function fromSystemError(err: unknown, what: string): HeadstartError {
  // Node's fs says 'ENOSPC'; lmdb-js gives the bare errno (28 ENOSPC, 122 EDQUOT on Linux).
  const sysCode = (err as { code?: unknown } | undefined)?.code;
  if (sysCode === 'ENOSPC' || sysCode === 'EDQUOT' || sysCode === 28 || sysCode === 122) return new HeadstartError('VOLUME_NO_SPACE', `${what}: no space left on device`, { cause: err });
  // Not a failed disk: a data directory of another user, or made read-only. Say what to do.
  const uid = typeof process.getuid === 'function' ? ` (uid ${process.getuid()})` : '';
  if (sysCode === 'EACCES' || sysCode === 'EPERM') return new HeadstartError('VOLUME_IO', `${what}: ${(err as Error)?.message ?? String(err)}: this process${uid} may not write there; run headstart as the user that owns the data directory, or give that user write permission on it`, { cause: err });
  if (sysCode === 'EROFS') return new HeadstartError('VOLUME_IO', `${what}: ${(err as Error)?.message ?? String(err)}: the file system is mounted read-only; remount it read-write`, { cause: err });
  return new HeadstartError('VOLUME_IO', `${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

/** Public shapes of the NBD package (index.ts is the door). */
import type { BlockDevice } from '@headstart/volume';

/** pino-compatible: `logger.warn({ conn, reason }, 'message')`. */
export interface NbdLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug?(obj: object, msg?: string): void;
}

/**
 * Receives every accepted write-type request of an export as it arrives, in arrival order,
 * so the server can record a block trace (the traces package owns the file format).
 */
export interface WriteRecorder {
  record(op: 'write' | 'zero' | 'trim', offset: number, length: number, timeMs: number): void;
}

export interface ExportOptions {
  /** Refuse writes with EPERM and say READ_ONLY in the transmission flags. */
  readonly readOnly?: boolean;
  /** Shown by `nbdinfo --list` (NBD_REP_SERVER and NBD_INFO_DESCRIPTION). */
  readonly description?: string;
  readonly recorder?: WriteRecorder;
  /**
   * Advertise NBD_FLAG_CAN_MULTI_CONN. True by default: every connection to an export
   * goes through the same BlockDevice object, whose flush() covers every completed write
   * no matter which connection made it. Set false for a device where that does not hold.
   */
  readonly multiConn?: boolean;
}

export interface NbdServerOptions {
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Default 0 (any free port; read it back from `server.port`). */
  readonly port?: number;
  /** Exports to serve from the start: name -> device (or device with options). */
  readonly exports?: Record<string, BlockDevice | ({ device: BlockDevice } & ExportOptions)>;
  /** The export a client gets when it asks for the empty name (e.g. `nbd://host:port`). */
  readonly defaultExport?: string;
  readonly logger?: NbdLogger;
  /** Largest READ/WRITE payload (advertised as maximum block size). Default 32 MiB. */
  readonly maxRequest?: number;
  /** Payload bytes one connection may have in flight before its socket is paused. Default 64 MiB. */
  readonly maxInflightBytes?: number;
  /** Requests one connection may have in flight before its socket is paused. Default 512. */
  readonly maxInflightRequests?: number;
  readonly handshakeTimeoutMs?: number;
  /** How long stop()/removeExport() let in-flight requests finish before dropping clients. */
  readonly drainTimeoutMs?: number;
  /**
   * Read each socket into one reused 256 KiB buffer (recv-buffer.ts) instead of Node's
   * default 64 KiB chunks. Default true; false only to compare the two.
   */
  readonly reuseReceiveBuffer?: boolean;
  /** Time source for the recorder (epoch ms). */
  readonly clock?: { now(): number };
}

export interface ExportSummary {
  readonly name: string;
  readonly size: number;
  readonly readOnly: boolean;
  readonly connections: number;
}

export interface NbdServer {
  readonly host: string;
  readonly port: number;
  /** Serve `device` under `name`; throws NBD_EXPORT_EXISTS if the name is taken. */
  addExport(name: string, device: BlockDevice, options?: ExportOptions): void;
  /**
   * Stop serving `name`: new clients no longer see it; its connected clients get their
   * in-flight requests answered, then are disconnected. Resolves when they are gone, so the
   * caller may then shut the device down.
   */
  removeExport(name: string): Promise<boolean>;
  exports(): ExportSummary[];
  /** Closes the listener and every connection (after answering in-flight requests). */
  stop(): Promise<void>;
}

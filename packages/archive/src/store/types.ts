/**
 * The one narrow seam between the archive and where its bytes live. Every backend (a
 * directory, S3) runs the same compliance suite (store.test.ts), so the archive's layout,
 * retention and restore code never knows which one it talks to.
 *
 * Error contract (every method, every backend): failures are HeadstartError with
 * - ARCHIVE_BAD_KEY      the key is not a relative path of [A-Za-z0-9._-] segments (nothing is touched);
 * - ARCHIVE_STORE_IO     a transient failure: 5xx, throttling, timeout, network, disk I/O (retryable);
 * - ARCHIVE_STORE_DENIED the store refused: credentials, permissions, missing bucket (not retryable);
 * - ARCHIVE_NO_SPACE     the directory's file system is full (nothing half-written is left);
 * - ARCHIVE_ABORTED      the caller's AbortSignal fired.
 * plus the per-method conditions written on each method below.
 */

export interface StoreCallOptions {
  readonly signal?: AbortSignal;
  /**
   * get only: the size the caller expects (a manifest records every object's size). A
   * backend may use it to save a round trip; the result is the object's real bytes either way.
   */
  readonly sizeHint?: number;
  /**
   * get only: where the backend may take the result's memory from (restore recycles its
   * chunk buffers instead of making the kernel zero fresh 4 MiB pages for every object).
   */
  readonly alloc?: (size: number) => Buffer;
}

export interface ObjectInfo {
  readonly key: string;
  /** Bytes. */
  readonly size: number;
}

export interface ObjectStore {
  /** For messages: "dir:/path" or "s3://bucket/prefix". */
  readonly description: string;
  /**
   * True where reading an object back is about as cheap as a local file read (the
   * directory). The archive's "mutate" path folds changes into a new whole-chunk object
   * only where this holds; over a network it uploads small delta objects instead.
   */
  readonly localReads: boolean;
  /**
   * Stores `data` under `key`, replacing any object there. Atomic: a reader sees the old
   * object or the whole new one, never a part, even if the process dies mid-call.
   * Resolves only once the object is durable.
   */
  put(key: string, data: Uint8Array, options?: StoreCallOptions): Promise<void>;
  /** The object's bytes. Rejects with ARCHIVE_NOT_FOUND if there is no object under `key`. */
  get(key: string, options?: StoreCallOptions): Promise<Buffer>;
  /** The object's size, or null if there is no object under `key` (missing is not an error). */
  head(key: string, options?: StoreCallOptions): Promise<ObjectInfo | null>;
  /**
   * Every object whose key starts with `prefix` (a plain string prefix, "" for all), in
   * ascending byte order of key. No objects is an empty list, not an error.
   */
  list(prefix: string, options?: StoreCallOptions): Promise<ObjectInfo[]>;
  /** Removes the object. Idempotent: deleting a missing key resolves. */
  delete(key: string, options?: StoreCallOptions): Promise<void>;
  /** Releases connections / handles; the store is unusable afterwards. */
  close(): Promise<void>;
}

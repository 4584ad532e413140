/**
 * The embedded default backend: one file per object under a root directory, key segments
 * as path segments. Writes are atomic the way litestream's file backend does it: a temp
 * file in the same directory, fsync, rename over the key, fsync the directory, so a crash
 * leaves either the old object or the whole new one (a stray temp file is never listed,
 * read or counted as an object).
 *
 * One limit S3 does not have: a key cannot also be a "folder" of another key ("a" and
 * "a/b"). The archive's layout never does that; put rejects it with ARCHIVE_BAD_KEY.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { HeadstartError } from '@headstart/errors';
import { aborted, checkKey, checkPrefix } from './keys';
import type { ObjectInfo, ObjectStore, StoreCallOptions } from './types';

export interface DirectoryStoreOptions {
  /** Root directory; created if missing. */
  readonly path: string;
  /** fsync files and directories (default true; tests of layout logic may turn it off for speed). */
  readonly durable?: boolean;
}

const TMP = '.tmp-';

export async function openDirectoryStore(options: DirectoryStoreOptions): Promise<ObjectStore> {
  if (typeof options?.path !== 'string' || options.path === '') throw new HeadstartError('ARCHIVE_CONFIG', 'directory store needs a path');
  try {
    await mkdir(options.path, { recursive: true });
  } catch (err) {
    throw mapFsError(err, `create archive directory ${options.path}`);
  }
  return new DirectoryStore(options.path, options.durable ?? true);
}

class DirectoryStore implements ObjectStore {
  readonly description: string;
  readonly localReads = true;
  #closed = false;

  constructor(
    private readonly root: string,
    private readonly durable: boolean,
  ) {
    this.description = `dir:${root}`;
  }

  async put(key: string, data: Uint8Array, options?: StoreCallOptions): Promise<void> {
    this.#open();
    checkKey(key);
    aborted(options?.signal, `put ${key}`);
    const path = join(this.root, key);
    const dir = path.slice(0, path.lastIndexOf('/'));
    const tmp = join(dir, `${TMP}${randomBytes(6).toString('hex')}`);
    try {
      await mkdir(dir, { recursive: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' || code === 'ENOTDIR') throw new HeadstartError('ARCHIVE_BAD_KEY', `key ${key} runs through an existing object`, { cause: err });
      throw mapFsError(err, `put ${key}`);
    }
    try {
      const fh = await open(tmp, 'wx');
      try {
        let off = 0;
        while (off < data.length) off += (await fh.write(data, off, data.length - off, off)).bytesWritten;
        if (this.durable) await fh.sync();
      } finally {
        await fh.close();
      }
      aborted(options?.signal, `put ${key}`);
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined);
      if (err instanceof HeadstartError) throw err;
      if ((err as NodeJS.ErrnoException).code === 'EISDIR') throw new HeadstartError('ARCHIVE_BAD_KEY', `key ${key} is a folder of other keys`, { cause: err });
      throw mapFsError(err, `put ${key}`);
    }
    if (this.durable) await syncDir(dir);
  }

  async get(key: string, options?: StoreCallOptions): Promise<Buffer> {
    this.#open();
    checkKey(key);
    aborted(options?.signal, `get ${key}`);
    try {
      // Few thread-pool round trips per object (restores read thousands of 4 MiB objects;
      // readFile would split each into many 512 KiB reads).
      const fh = await open(join(this.root, key), 'r');
      let closing = false;
      try {
        const hint = options?.sizeHint;
        if (hint !== undefined && Number.isSafeInteger(hint) && hint >= 0 && hint < 2 ** 31) {
          // Ask for one byte more than expected: a short read of a regular file is its end,
          // so the whole object comes in one read, without a stat.
          const buf = options?.alloc?.(hint + 1) ?? Buffer.allocUnsafe(hint + 1);
          const { bytesRead } = await fh.read(buf, 0, hint + 1, 0);
          if (bytesRead <= hint) {
            // The bytes are in hand: close without making the caller wait one more round trip.
            closing = true;
            fh.close().catch(() => undefined);
            return buf.subarray(0, bytesRead);
          }
        }
        const size = (await fh.stat()).size;
        const buf = Buffer.allocUnsafe(size);
        let off = 0;
        while (off < size) {
          const { bytesRead } = await fh.read(buf, off, size - off, off);
          if (bytesRead === 0) throw new HeadstartError('ARCHIVE_STORE_IO', `get ${key}: object shrank while being read`);
          off += bytesRead;
        }
        return buf;
      } finally {
        if (!closing) await fh.close();
      }
    } catch (err) {
      throw mapFsError(err, `get ${key}`, options?.signal);
    }
  }

  async head(key: string, options?: StoreCallOptions): Promise<ObjectInfo | null> {
    this.#open();
    checkKey(key);
    aborted(options?.signal, `head ${key}`);
    try {
      const st = await stat(join(this.root, key));
      return st.isFile() ? { key, size: st.size } : null;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw mapFsError(err, `head ${key}`);
    }
  }

  async list(prefix: string, options?: StoreCallOptions): Promise<ObjectInfo[]> {
    this.#open();
    checkPrefix(prefix);
    // Walk only the deepest folder that the prefix fully names.
    const cut = prefix.lastIndexOf('/');
    const base = cut < 0 ? '' : prefix.slice(0, cut);
    const out: ObjectInfo[] = [];
    const walk = async (rel: string): Promise<void> => {
      aborted(options?.signal, `list ${prefix}`);
      let entries;
      try {
        entries = await readdir(join(this.root, rel), { withFileTypes: true });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return;
        throw mapFsError(err, `list ${prefix}`);
      }
      for (const e of entries) {
        if (e.name.startsWith(TMP)) continue;
        const key = rel === '' ? e.name : `${rel}/${e.name}`;
        if (e.isDirectory()) {
          // Descend only where the folder can still hold keys with the prefix.
          if (key.startsWith(prefix) || prefix.startsWith(key + '/')) await walk(key);
        } else if (e.isFile() && key.startsWith(prefix)) {
          const st = await stat(join(this.root, key)).catch(() => null);
          if (st !== null) out.push({ key, size: st.size });
        }
      }
    };
    await walk(base);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string, options?: StoreCallOptions): Promise<void> {
    this.#open();
    checkKey(key);
    aborted(options?.signal, `delete ${key}`);
    try {
      await unlink(join(this.root, key));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw mapFsError(err, `delete ${key}`);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #open(): void {
    if (this.#closed) throw new HeadstartError('ARCHIVE_CONFIG', `${this.description}: store is closed`);
  }
}

async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw mapFsError(err, `fsync ${dir}`);
  }
}

function mapFsError(err: unknown, what: string, signal?: AbortSignal): HeadstartError {
  if (err instanceof HeadstartError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.name === 'AbortError' || signal?.aborted) return new HeadstartError('ARCHIVE_ABORTED', `${what}: cancelled`, { cause: err });
  switch (e?.code) {
    case 'ENOENT':
    case 'ENOTDIR':
    case 'EISDIR':
      return new HeadstartError('ARCHIVE_NOT_FOUND', `${what}: no such object`, { cause: err });
    case 'ENOSPC':
    case 'EDQUOT':
      return new HeadstartError('ARCHIVE_NO_SPACE', `${what}: no space left on device`, { cause: err });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new HeadstartError('ARCHIVE_STORE_DENIED', `${what}: ${e.message}`, { cause: err });
    default:
      return new HeadstartError('ARCHIVE_STORE_IO', `${what}: ${e?.message ?? String(err)}`, { cause: err });
  }
}

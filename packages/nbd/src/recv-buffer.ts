/**
 * Receiving into one reused buffer per connection instead of Node's default 'data' chunks.
 *
 * Why: by default Node reads a TCP socket 64 KiB at a time into a freshly allocated buffer
 * and pushes it through the Readable stream machinery. Measured on loopback here (one
 * sender writing 1 MiB buffers, Node 20): 99 MB/s and 3.8 ms of CPU per MiB that way,
 * against 1.2-2.0 GB/s and 0.25-0.38 ms per MiB when the socket reads into a fixed user
 * buffer (256 KiB to 1 MiB). Large NBD WRITEs are exactly that traffic.
 *
 * Node offers this (`onread: { buffer, callback }`) only for sockets it creates for
 * `net.connect`, not for sockets a server accepts; the same switch exists on every stream
 * handle, keyed by two symbols of net.Socket. We turn it on when those are present and the
 * handle supports it, and otherwise leave the socket on ordinary 'data' events, so a
 * future Node that renames them only costs speed. pause()/resume() keep working: net.Socket
 * stops and restarts reading on the handle itself in this mode.
 *
 * The buffer is overwritten by the next read: whoever receives a chunk must copy what it
 * keeps (the parser does, when told the chunk is transient). The one exception is the
 * tail of a large WRITE, which Node can read straight into its payload buffer (`target`).
 */
import type { Socket } from 'node:net';

export const RECV_BUFFER_SIZE = 256 * 1024;

type ReadCallback = (nread: number, buf: Buffer) => void;

/**
 * Where the next read should land. A connection returns a view of a large WRITE payload it
 * is assembling, so the kernel copies straight into it (no second copy through the receive
 * buffer), a view of the start of `recv` to read less than a whole receive buffer (whose
 * bytes it then gets as ordinary input), or null for the whole receive buffer `recv`.
 */
export type ReadTarget = (recv: Buffer) => Buffer | null;

/**
 * Returns true if `socket` now delivers its input to `onRead` (and no longer as 'data').
 * `onRead(n, buf)`: the first n bytes of `buf` are new input; `buf` is either the receive
 * buffer or the last buffer `target` returned.
 */
export function useRecvBuffer(socket: Socket, size: number, onRead: ReadCallback, target?: ReadTarget): boolean {
  const symbols = Object.getOwnPropertySymbols(socket);
  const kBuffer = symbols.find((s) => s.description === 'kBuffer');
  const kBufferCb = symbols.find((s) => s.description === 'kBufferCb');
  const kBufferGen = symbols.find((s) => s.description === 'kBufferGen');
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (buf: Buffer) => void } })._handle;
  if (!kBuffer || !kBufferCb || !kBufferGen || typeof handle?.useUserBuffer !== 'function') return false;
  const record = socket as unknown as Record<symbol, unknown>;
  if (record[kBuffer] !== null || record[kBufferCb] !== null || record[kBufferGen] !== null) return false; // not the layout we know
  const buf = Buffer.allocUnsafe(size);
  record[kBuffer] = buf;
  record[kBufferCb] = onRead;
  // Node asks this after every read for the buffer of the next one.
  record[kBufferGen] = target ? () => target(buf) ?? buf : () => buf;
  handle.useUserBuffer(buf);
  return true;
}

/**
 * DEV DOCS — the NBD server: a TCP listener, the export registry (exports.ts) and one
 * NbdConnection per client (connection.ts). Exports can be added and removed while
 * clients are connected; removing one answers its clients' in-flight requests, then
 * disconnects them, so the caller can shut the device down safely afterwards.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { BlockDevice } from '@headstart/volume';
import {
  DEFAULT_DRAIN_TIMEOUT_MS,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_INFLIGHT_BYTES,
  DEFAULT_MAX_INFLIGHT_REQUESTS,
  DEFAULT_MAX_REQUEST,
} from './constants';
import { NbdConnection, type ConnectionContext } from './connection';
import { ExportRegistry } from './exports';
import { PayloadPool } from './payload-pool';
import type { ExportOptions, ExportSummary, NbdLogger, NbdServer, NbdServerOptions } from './types';

/** Payload buffers kept for reuse across all connections (payload-pool.ts). */
const POOLED_PAYLOAD_BYTES = 64 * 1024 * 1024;

const silent: NbdLogger = { info() {}, warn() {}, error() {} };

export async function startNbdServer(options: NbdServerOptions = {}): Promise<NbdServer> {
  const registry = new ExportRegistry();
  for (const [name, spec] of Object.entries(options.exports ?? {})) {
    if (isDevice(spec)) registry.add(name, spec);
    else registry.add(name, spec.device, spec);
  }
  const maxRequest = options.maxRequest ?? DEFAULT_MAX_REQUEST;
  const connections = new Set<NbdConnection>();
  let stopping = false;
  const clock = options.clock ?? Date;
  const ctx: ConnectionContext = {
    registry,
    logger: options.logger ?? silent,
    defaultExport: options.defaultExport,
    maxRequest,
    // One maximal request must always fit, or a client sending it would stall forever.
    maxInflightBytes: Math.max(options.maxInflightBytes ?? DEFAULT_MAX_INFLIGHT_BYTES, maxRequest),
    maxInflightRequests: Math.max(1, options.maxInflightRequests ?? DEFAULT_MAX_INFLIGHT_REQUESTS),
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
    drainTimeoutMs: options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS,
    now: () => clock.now(),
    payloads: new PayloadPool(POOLED_PAYLOAD_BYTES),
    reuseReceiveBuffer: options.reuseReceiveBuffer !== false,
    stopping: () => stopping,
  };

  // allowHalfOpen: a client may send NBD_CMD_DISC and shut its side at once; we still owe
  // it the replies to requests in flight.
  const listener: Server = createServer({ allowHalfOpen: true, noDelay: true }, (socket: Socket) => {
    if (stopping) return void socket.destroy();
    const conn = new NbdConnection(socket, ctx);
    connections.add(conn);
    void conn.closed.then(() => connections.delete(conn));
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(options.port ?? 0, host, () => {
      listener.off('error', reject);
      resolve();
    });
  });
  const address = listener.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  ctx.logger.info({ host, port, exports: registry.all().map((e) => e.name) }, 'nbd server listening');

  return {
    host,
    port,
    addExport(name: string, device: BlockDevice, exportOptions?: ExportOptions): void {
      registry.add(name, device, exportOptions);
      ctx.logger.info({ export: name, size: device.size, readOnly: exportOptions?.readOnly === true }, 'export added');
    },
    async removeExport(name: string): Promise<boolean> {
      const entry = registry.take(name);
      if (!entry) return false;
      await Promise.all([...entry.connections].map((c) => c.shutdown(`export "${name}" removed`)));
      ctx.logger.info({ export: name }, 'export removed');
      return true;
    },
    exports(): ExportSummary[] {
      return registry.summaries();
    },
    async stop(): Promise<void> {
      if (stopping) return;
      stopping = true;
      const closedListener = new Promise<void>((resolve) => listener.close(() => resolve()));
      await Promise.all([...connections].map((c) => c.shutdown('server stopping')));
      await closedListener;
      ctx.logger.info({ port }, 'nbd server stopped');
    },
  };
}

function isDevice(spec: BlockDevice | ({ device: BlockDevice } & ExportOptions)): spec is BlockDevice {
  return typeof (spec as BlockDevice).read === 'function';
}

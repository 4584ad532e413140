/**
 * Test helper: a real S3 server (s3rver, a devDependency) on 127.0.0.1 port 0 with its
 * files in a temp dir, plus an HTTP fault proxy in front of it that can answer the next
 * requests with throttling / 5xx errors or stall them — real sockets, real S3 wire
 * protocol, faults at the seam. Not part of the package's public door.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// @ts-expect-error s3rver ships no type definitions
import S3rver from 's3rver';

export const TEST_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface TestS3 {
  /** The real server. */
  readonly endpoint: string;
  /** The fault proxy in front of it. */
  readonly proxyEndpoint: string;
  readonly bucket: string;
  /** Answer the next `count` requests through the proxy with `status` (503 SlowDown, 500...). */
  failNext(count: number, status: number): void;
  /** Hold the next `count` requests through the proxy for `ms` before passing them on. */
  stallNext(count: number, ms: number): void;
  /** Requests the proxy has seen, by method. */
  readonly seen: Record<string, number>;
  stop(): Promise<void>;
}

export async function startTestS3(bucket = 'archive-test'): Promise<TestS3> {
  const dir = await mkdtemp(join(tmpdir(), 'hs-s3rver-'));
  const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: dir, configureBuckets: [{ name: bucket }] });
  const addr = (await server.run()) as { port: number };
  const endpoint = `http://127.0.0.1:${addr.port}`;
  let failures: { count: number; status: number } = { count: 0, status: 503 };
  let stalls: { count: number; ms: number } = { count: 0, ms: 0 };
  const seen: Record<string, number> = {};
  const proxy: Server = createServer((req, res) => {
    seen[req.method ?? '?'] = (seen[req.method ?? '?'] ?? 0) + 1;
    if (failures.count > 0) {
      failures.count--;
      req.resume();
      const code = failures.status === 503 ? 'SlowDown' : 'InternalError';
      res.writeHead(failures.status, { 'content-type': 'application/xml' });
      res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected by the test</Message></Error>`);
      return;
    }
    const delay = stalls.count > 0 ? (stalls.count--, stalls.ms) : 0;
    setTimeout(() => {
      const up = request({ host: '127.0.0.1', port: addr.port, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    }, delay);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const proxyPort = (proxy.address() as { port: number }).port;
  return {
    endpoint,
    proxyEndpoint: `http://127.0.0.1:${proxyPort}`,
    bucket,
    seen,
    failNext: (count, status) => void (failures = { count, status }),
    stallNext: (count, ms) => void (stalls = { count, ms }),
    async stop() {
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

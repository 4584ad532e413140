/**
 * `headstart serve` when one of its addresses is taken (another program, a second node on
 * the same config's ports): it says which key and why, exits with the configuration exit
 * code, and leaves nothing running. Before, the NBD and peers listeners printed a stack (with
 * TLS, an uncaught 'error' event crashed the process), and a taken dashboard, metrics or
 * admin address left a half-started node serving NBD that ignored SIGTERM.
 */
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connectNbd } from '@headstart/nbd';
import { freePort, runCli } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';

const squatters: Server[] = [];
afterAll(() => {
  for (const s of squatters) s.close();
});

async function occupy(port: number): Promise<void> {
  const s = createServer();
  squatters.push(s);
  await new Promise<void>((resolve) => s.listen(port, '127.0.0.1', resolve));
}

describe('serve with an address in use', () => {
  for (const key of ['nbd', 'peers', 'admin', 'metrics', 'dashboard'] as const) {
    it(`listen.${key}: a clear error, exit code 2, nothing left listening`, async () => {
      const dir = tempDir(`hs-in-use-${key}-`);
      const config = join(dir, 'hs.yaml');
      const ports = { nbd: await freePort(), peers: await freePort(), admin: await freePort(), metrics: await freePort(), dashboard: await freePort() };
      // TLS as `init node` sets it up by default: the peers listener is HTTPS underneath.
      const init = await runCli(['init', 'node', 'site-x', '-c', config, ...Object.entries(ports).flatMap(([k, p]) => [`--${k}`, `127.0.0.1:${p}`])]);
      expect(init.code, init.stderr).toBe(0);
      expect((await runCli(['init', 'volume', 'vol', '--size', '4MiB', '-c', config])).code).toBe(0);
      await occupy(ports[key]);
      const serve = await runCli(['serve', '-c', config], { timeoutMs: 30_000 });
      expect(serve.code, serve.stderr).toBe(2);
      expect(serve.stderr).toContain(`CONFIG_INVALID: listen.${key} 127.0.0.1:${ports[key]}: cannot listen: the address is in use`);
      expect(serve.stderr).not.toMatch(/\n\s+at /); // no stack
      // The process is gone, and with it every listener it had opened.
      if (key !== 'nbd') await expect(connectNbd({ host: '127.0.0.1', port: ports.nbd, exportName: 'vol' })).rejects.toThrow();
    }, 60_000);
  }
});

/**
 * `headstart serve` when the node's TLS key or certificate (as `init node` writes them) is
 * missing, damaged or another node's: it names the file and what is wrong with it, exits
 * with the configuration exit code, and prints no stack. Before, a missing key read
 * "listen.peers 127.0.0.1:PORT: cannot listen: ENOENT" (the listener blamed for the file),
 * and a damaged or mismatched key printed openssl's "DECODER routines::unsupported" or
 * "key values mismatch" with a stack, exit code 1.
 */
import { copyFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort, runCli } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';

async function node(name: string): Promise<{ dir: string; config: string }> {
  const dir = tempDir(`hs-tls-${name}-`);
  const config = join(dir, 'hs.yaml');
  const ports = { nbd: await freePort(), peers: await freePort(), admin: await freePort(), metrics: await freePort(), dashboard: await freePort() };
  const init = await runCli(['init', 'node', name, '-c', config, ...Object.entries(ports).flatMap(([k, p]) => [`--${k}`, `127.0.0.1:${p}`])]);
  expect(init.code, init.stderr).toBe(0);
  expect((await runCli(['init', 'volume', 'vol', '--size', '4MiB', '-c', config])).code).toBe(0);
  return { dir, config };
}

describe('serve with a TLS key that cannot be used', () => {
  it('missing: names the key file, not the listener', async () => {
    const { dir, config } = await node('site-x');
    await rm(join(dir, 'site-x.key'));
    const serve = await runCli(['serve', '-c', config], { timeoutMs: 30_000 });
    expect(serve.code, serve.stderr).toBe(2);
    expect(serve.stderr).toContain('LINK_TLS_CONFIG: cannot read TLS file');
    expect(serve.stderr).toContain('site-x.key');
    expect(serve.stderr).not.toContain('cannot listen');
  }, 60_000);

  it('damaged, or another node\'s: says which and why, no stack', async () => {
    const { dir, config } = await node('site-y');
    const other = await node('site-z');
    await writeFile(join(dir, 'site-y.key'), 'not a key\n');
    const damaged = await runCli(['serve', '-c', config], { timeoutMs: 30_000 });
    expect(damaged.code, damaged.stderr).toBe(2);
    expect(damaged.stderr).toMatch(/LINK_TLS_CONFIG: .*site-y\.key is not a PEM certificate and unencrypted PEM private key/);
    expect(damaged.stderr).not.toMatch(/\n\s+at /);
    await copyFile(join(other.dir, 'site-z.key'), join(dir, 'site-y.key'));
    const foreign = await runCli(['serve', '-c', config], { timeoutMs: 30_000 });
    expect(foreign.code, foreign.stderr).toBe(2);
    expect(foreign.stderr).toMatch(/LINK_TLS_CONFIG: the key .*site-y\.key is not the private key of the certificate .*site-y\.crt/);
    expect(foreign.stderr).not.toMatch(/\n\s+at /);
  }, 90_000);
});

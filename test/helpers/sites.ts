/** Two sites on loopback, configured and paired with the real CLI (`init node`, `pair`). */
import { join } from 'node:path';
import { expect } from 'vitest';
import { freePort, runCli } from './cli';

export interface PairedSites {
  /** The two configuration files. */
  readonly a: string;
  readonly b: string;
  readonly ports: { aNbd: number; aPeers: number; aAdmin: number; bNbd: number; bPeers: number; bAdmin: number };
  /** Runs a CLI command that must succeed; its trimmed stdout. */
  ok(args: string[]): Promise<string>;
}

/** Writes site-a's and site-b's configurations into `dir` (data where given) and pairs them. */
export async function pairedSites(dir: string, data: { a: string; b: string }): Promise<PairedSites> {
  const a = join(dir, 'a.yaml');
  const b = join(dir, 'b.yaml');
  const ports = { aNbd: await freePort(), aPeers: await freePort(), aAdmin: await freePort(), bNbd: await freePort(), bPeers: await freePort(), bAdmin: await freePort() };
  const ok = async (args: string[]) => {
    const r = await runCli(args);
    expect(r.code, `headstart ${args.join(' ')}\n${r.stderr}`).toBe(0);
    return r.stdout.trim();
  };
  await ok(['init', 'node', 'site-a', '-c', a, '--data', data.a, '--nbd', `127.0.0.1:${ports.aNbd}`, '--peers', `127.0.0.1:${ports.aPeers}`, '--admin', `127.0.0.1:${ports.aAdmin}`, '--dashboard', '127.0.0.1:0', '--metrics', '127.0.0.1:0']);
  await ok(['init', 'node', 'site-b', '-c', b, '--data', data.b, '--nbd', `127.0.0.1:${ports.bNbd}`, '--peers', `127.0.0.1:${ports.bPeers}`, '--admin', `127.0.0.1:${ports.bAdmin}`, '--dashboard', '127.0.0.1:0', '--metrics', '127.0.0.1:0']);
  const token = await ok(['pair', 'token', '-c', a]);
  const reply = /pair accept (\S+)/.exec(await ok(['pair', 'accept', token, '-c', b]))?.[1];
  await ok(['pair', 'accept', reply!, '-c', a]);
  return { a, b, ports, ok };
}

/**
 * The disaster-recovery drill, end to end with real processes and the real CLI:
 * pair two sites, replicate under load, kill -9 the source site, promote the replica
 * (refused at first while the old primary may still be alive, then forced), write to it
 * through NBD, bring the old source back (it is fenced: its lower epoch cannot ship),
 * demote it, fail back with only the differing blocks sent, and check both sides equal.
 * `headstart verify` must find a replica equal while healthy and report the one range a
 * damaged replica block lies in.
 */
import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { connectNbd, type NbdClient } from '@headstart/nbd';
import type { NodeStatus } from '@headstart/node';
import { freePort, killHard, runCli, startServe, stopGracefully, waitFor, waitServing } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';

const MiB = 1 << 20;
const SIZE = 64 * MiB;

async function status(config: string): Promise<NodeStatus | null> {
  const r = await runCli(['status', '--json', '-c', config]);
  return r.code === 0 ? (JSON.parse(r.stdout) as NodeStatus) : null;
}

async function writeSome(client: NbdClient, seed: number, count: number, region: [number, number]): Promise<number> {
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const offset = region[0] + (((seed * 7919 + i * 104729) % ((region[1] - region[0]) / 4096)) >>> 0) * 4096;
    const length = 4096 * (1 + (i % 4));
    const data = Buffer.alloc(Math.min(length, region[1] - offset), (seed + i) & 0xff);
    await client.write(offset, data);
    bytes += data.length;
  }
  await client.flush();
  return bytes;
}

async function hashExport(port: number): Promise<string> {
  const c = await connectNbd({ host: '127.0.0.1', port, exportName: 'vol' });
  const h = createHash('sha256');
  for (let at = 0; at < c.size; at += 4 * MiB) h.update(await c.read(at, Math.min(4 * MiB, c.size - at)));
  await c.close();
  return h.digest('hex');
}

describe('DR drill: failover and failback between two sites', () => {
  it('promotes, fences the old primary, and fails back with the delta only', async () => {
    const dir = tempDir('headstart-drill-');
    const ports = { aNbd: await freePort(), aPeers: await freePort(), aAdmin: await freePort(), bNbd: await freePort(), bPeers: await freePort(), bAdmin: await freePort() };
    const a = join(dir, 'a', 'headstart.yaml');
    const b = join(dir, 'b', 'headstart.yaml');
    const ok = async (args: string[]) => {
      const r = await runCli(args);
      expect(r.code, `headstart ${args.join(' ')}\n${r.stderr}`).toBe(0);
      return r.stdout.trim();
    };
    // --- set up and pair the two sites
    await ok(['init', 'node', 'site-a', '-c', a, '--nbd', `127.0.0.1:${ports.aNbd}`, '--peers', `127.0.0.1:${ports.aPeers}`, '--admin', `127.0.0.1:${ports.aAdmin}`, '--dashboard', '127.0.0.1:0', '--metrics', '127.0.0.1:0']);
    await ok(['init', 'node', 'site-b', '-c', b, '--nbd', `127.0.0.1:${ports.bNbd}`, '--peers', `127.0.0.1:${ports.bPeers}`, '--admin', `127.0.0.1:${ports.bAdmin}`, '--dashboard', '127.0.0.1:0', '--metrics', '127.0.0.1:0']);
    const token = await ok(['pair', 'token', '-c', a]);
    const acceptB = await ok(['pair', 'accept', token, '-c', b]);
    const reply = /pair accept (\S+)/.exec(acceptB)?.[1];
    expect(reply).toBeDefined();
    await ok(['pair', 'accept', reply!, '-c', a]);
    await ok(['init', 'volume', 'vol', '--size', '64MiB', '--role', 'primary', '--every', '2s', '--sink', 'site-b', '-c', a]);
    await ok(['init', 'volume', 'vol', '--size', '64MiB', '--role', 'replica', '--every', '2s', '--sink', 'site-a', '-c', b]);
    const bad = await runCli(['pair', 'accept', 'hs1.garbage', '-c', a]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('CONFIG_INVALID');
    // TLS by default: each site made a certificate, and pairing pinned the other's
    const peerA = (parseYaml(await readFile(a, 'utf8')) as { peers: { name: string; url: string; ca?: string; verifyHost?: boolean }[] }).peers[0];
    expect(peerA).toMatchObject({ name: 'site-b', url: `wss://127.0.0.1:${ports.bPeers}`, ca: './peer-site-b.crt', verifyHost: false });
    expect(await readFile(join(dir, 'a', 'peer-site-b.crt'), 'utf8')).toBe(await readFile(join(dir, 'b', 'site-b.crt'), 'utf8'));
    const forged = token.slice(0, 4) + Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(token.slice(4), 'base64url').toString()), cert: '-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n' })).toString('base64url');
    const badCert = await runCli(['pair', 'accept', forged, '-c', b]);
    expect(badCert.code).toBe(2);
    expect(badCert.stderr).toContain('not a valid X.509 certificate');

    // --- replicate under load
    let siteB = startServe(b);
    let siteA = startServe(a);
    await waitServing(siteA, a);
    await waitServing(siteB, b);
    const clientA = await waitFor('NBD on site-a', () => connectNbd({ host: '127.0.0.1', port: ports.aNbd, exportName: 'vol' }));
    await writeSome(clientA, 1, 300, [0, SIZE / 2]);
    const committed = await waitFor('site-b commits a point after the load', async () => {
      const s = await status(b);
      const n = s?.volumes[0].committed?.n ?? -1;
      return n >= 3 ? n : null;
    });

    // --- the operator caps the link at run time, and lifts the cap again
    expect(JSON.parse(await ok(['rate', '40MB/s', '--peer', 'site-b', '--json', '-c', a]))).toMatchObject({ peer: 'site-b', rateLimit: 40e6, links: 1, cap: { setBy: 'operator' } });
    expect((await status(a))!.volumes[0].sinks.find((k) => k.name === 'site-b')!.rateLimit).toBe(40e6);
    expect(await ok(['status', '-c', a])).toContain('link caps: peer site-b 40.00 MB/s (set by an operator: it holds until `headstart rate auto --peer site-b`)');
    expect(await ok(['rate', 'none', '--peer', 'site-b', '-c', a])).toContain('is off (set by an operator');
    expect(await ok(['rate', 'auto', '--peer', 'site-b', '-c', a])).toBe('the cap of peer site-b is off, shared by 1 link');
    const noPeer = await runCli(['rate', '1MB/s', '--peer', 'nobody', '-c', a]);
    expect(noPeer.code).toBe(2);
    expect(noPeer.stderr).toContain('no peer');

    // --- verification: equal while healthy, and a damaged replica block is found
    const verifyB = async () => {
      const r = await runCli(['verify', 'vol', '--json', '-c', a, '--replica', `nbd://127.0.0.1:${ports.bNbd}/vol`], { timeoutMs: 120_000 });
      return { code: r.code, report: r.code === 0 || r.code === 4 ? (JSON.parse(r.stdout) as { equal: boolean; point: number; differing: { offset: number; length: number }[] }) : null, stderr: r.stderr };
    };
    const healthy = await verifyB();
    expect(healthy.code, healthy.stderr).toBe(0);
    expect(healthy.report!.equal).toBe(true);
    const noReplica = await runCli(['verify', 'vol', '-c', a]);
    expect(noReplica.code).toBe(2);
    expect(noReplica.stderr).toContain('verify needs --replica');
    expect(await ok(['verify', 'vol', '--end', '-c', a])).toBe('vol: no verification holds its schedule now');
    expect(await stopGracefully(siteB.process)).toBe(0);
    const image = join(dir, 'b', 'data', 'volumes', 'vol', 'image.raw');
    const fh = await open(image, 'r+');
    await fh.write(Buffer.alloc(512, 0xee), 0, 512, 40 * MiB + 4096); // bit rot on the replica
    await fh.close();
    siteB = startServe(b);
    await waitServing(siteB, b);
    const damaged = await verifyB();
    expect(damaged.code, damaged.stderr).toBe(4);
    expect(damaged.report!.differing).toEqual([{ offset: 40 * MiB, length: MiB }]);

    await writeSome(clientA, 2, 100, [0, SIZE / 2]); // writes after the last common point: rolled back at failback
    await clientA.close().catch(() => {});

    // --- the source site dies
    await killHard(siteA.process);
    const refused = await runCli(['promote', 'vol', '-c', b]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('NODE_PRIMARY_REACHABLE');
    const promoted = JSON.parse(await ok(['promote', 'vol', '--force', '--json', '-c', b])) as { epoch: number; point: number; tookMs: number };
    expect(promoted.epoch).toBe(2);
    console.log(`drill: promotion took ${promoted.tookMs.toFixed(0)} ms (point ${promoted.point}, epoch ${promoted.epoch})`);
    expect(promoted.point).toBeGreaterThanOrEqual(committed);

    // --- the promoted replica serves writes through NBD at once
    const clientB = await connectNbd({ host: '127.0.0.1', port: ports.bNbd, exportName: 'vol' });
    expect(clientB.readOnly).toBe(false);
    const writtenOnB = await writeSome(clientB, 3, 200, [SIZE / 2, SIZE]);
    await clientB.close();

    // --- the old primary comes back: its epoch is lower, it must not ship into site-b
    siteA = startServe(a);
    await waitServing(siteA, a);
    // Its planner did not lose what it had learnt (saved at a close before the kill -9).
    expect(siteA.log()).toContain('the planner starts from its saved model');
    await waitFor('site-a fenced', async () => {
      const s = await status(a);
      return s?.volumes[0].sinks[0]?.state === 'fenced' || /fenc|EPOCH/i.test(s?.volumes[0].sinks[0]?.lastError ?? '') ? true : null;
    }, 30_000);
    expect((await status(b))?.volumes[0]).toMatchObject({ role: 'primary', epoch: 2 });
    // Both sides say which site is stale, and what to do about it.
    await waitFor('site-a told it is the stale one', async () => (/the source is the stale one; demote it on the source's site/.test((await status(a))?.volumes[0].sinks[0]?.lastError ?? '') ? true : null), 30_000);
    await waitFor('site-b told site-a is the old primary', async () => {
      const e = (await status(b))?.volumes[0].sinks.find((k) => k.name === 'site-a')?.lastError ?? '';
      return e.includes("site-a still holds volume vol as primary at epoch 1, below the source's epoch 2: it is the old primary; demote it on site-a") ? true : null;
    }, 30_000);

    // --- failback: demote the old primary; only differing blocks come back
    expect(await ok(['demote', 'vol', '-c', a])).toMatch(/vol is a replica \(epoch 1, at its point \d+\); the primary will resynchronise it by checksum/);
    await ok(['snapshot', 'vol', '--json', '-c', b]);
    const target = (await status(b))!.volumes[0].latestClosed!;
    await waitFor('site-a commits site-b\'s point', async () => ((await status(a))?.volumes[0].committed?.n ?? -1) >= target, 60_000);
    const sB = (await status(b))!;
    const sent = sB.volumes[0].sinks.find((s) => s.name === 'site-a')!.payloadBytesSent;
    // Everything B wrote since promotion must come back, plus A's own writes after the common
    // point; far less than the whole volume.
    expect(sent).toBeGreaterThanOrEqual(writtenOnB * 0.5);
    expect(sent).toBeLessThan(SIZE / 4);
    console.log(`drill: failback sent ${sent} payload bytes (site-b wrote ${writtenOnB} after promotion; the volume is ${SIZE})`);

    // --- verify both sides equal (byte for byte, and by the verify command from the new primary)
    expect(await hashExport(ports.aNbd)).toBe(await hashExport(ports.bNbd));
    const back = await runCli(['verify', 'vol', '--json', '-c', b, '--replica', `nbd://127.0.0.1:${ports.aNbd}/vol`], { timeoutMs: 120_000 });
    expect(back.code, back.stderr).toBe(0);
    expect(JSON.parse(back.stdout)).toMatchObject({ equal: true });

    // --- export: the replica's committed point and a fresh point of the primary, as raw images
    const fromReplica = join(dir, 'replica.raw');
    const fromPrimary = join(dir, 'primary.raw');
    expect(JSON.parse(await ok(['export', 'vol', '--json', '-c', a, '-o', fromReplica]))).toMatchObject({ bytes: SIZE });
    expect(JSON.parse(await ok(['export', 'vol', '--json', '-c', b, '-o', fromPrimary]))).toMatchObject({ bytes: SIZE });
    const fileHash = async (path: string) => createHash('sha256').update(await readFile(path)).digest('hex');
    const live = await hashExport(ports.bNbd);
    expect(await fileHash(fromReplica)).toBe(live);
    expect(await fileHash(fromPrimary)).toBe(live);
    const again = await runCli(['export', 'vol', '-c', a, '-o', fromReplica]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('EXPORT_EXISTS');
    expect((await status(a))?.volumes[0]).toMatchObject({ role: 'replica', epoch: 2 });

    expect(await stopGracefully(siteA.process)).toBe(0);
    expect(await stopGracefully(siteB.process)).toBe(0);
  }, 240_000);
});

/**
 * A site's disk fills up, with the real CLI and real (tmpfs) file systems.
 *
 * The source: the node must refuse the writes that do not fit with ENOSPC and stay up, keep
 * every write it had acknowledged, retry the snapshot close it cannot record (status says
 * so), and once space is freed close the point, ship it, and leave the replica equal.
 * Before, the node died at the first close after the disk filled (volume/src/lmdb-guard.ts,
 * space.ts), or, surviving that, never closed a point again.
 *
 * The replica: staging is refused (VOLUME_NO_SPACE), the source keeps its points and backs
 * off, and once space is freed the replica catches up and verifies equal. Before, a batch
 * that failed to stage still counted as staged: a resuming source skipped it, the replica
 * committed and acknowledged points without those blocks, and verify found 7 MiB differing.
 *
 * The replica mid-commit: a point staged whole whose image writes then meet a full disk is
 * half applied; promoting that replica is refused (before, it was promoted, an image between
 * two points declared primary), and the commit finishes once space is freed.
 *
 * Both sites killed (-9) and restarted with their disks full: each comes up, the source
 * serves every acknowledged byte and refuses writes with ENOSPC, status says DISK FULL, and
 * once space is freed replication resumes. Before, a node refused to start ("opening volume
 * vol: no space left on device"): the operator lost even the reads and the status.
 *
 * Needs root to mount the tmpfs (as on the CI machine); skipped where mounting is not allowed.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectNbd, type NbdClient } from '@headstart/nbd';
import type { NodeStatus } from '@headstart/node';
import { killHard, runCli, startServe, stopGracefully, waitFor, waitServing } from '../helpers/cli';
import { pairedSites } from '../helpers/sites';
import { fillDisk, resizeDisk, smallDisk } from '../helpers/small-disk';
import { tempDir } from '../helpers/tmp';

const MiB = 1 << 20;
async function status(config: string): Promise<NodeStatus | null> {
  const r = await runCli(['status', '--json', '-c', config]);
  return r.code === 0 ? (JSON.parse(r.stdout) as NodeStatus) : null;
}

/** Two paired sites on loopback, each with its data directory where the test says. */
async function pairSites(aData: string, bData: string) {
  const dir = tempDir('headstart-disk-full-');
  const { a, b, ports, ok } = await pairedSites(dir, { a: aData, b: bData });
  // A 64 MiB volume: its sparse image can outgrow the small disks below.
  await ok(['init', 'volume', 'vol', '--size', '64MiB', '--role', 'primary', '--every', '2s', '--sink', 'site-b', '-c', a]);
  await ok(['init', 'volume', 'vol', '--size', '64MiB', '--role', 'replica', '--every', '2s', '--sink', 'site-a', '-c', b]);
  const siteA = startServe(a);
  const siteB = startServe(b);
  await waitServing(siteA, a);
  await waitServing(siteB, b);
  /** Waits until `headstart verify` finds the replica equal; a timeout says what it found last. */
  const verify = async () => {
    let last = '';
    return waitFor('the replica verified equal', async () => {
      const r = await runCli(['verify', 'vol', '--json', '-c', a, '--replica', `nbd://127.0.0.1:${ports.bNbd}/vol`], { timeoutMs: 120_000 });
      last = `exit ${r.code}: ${r.stdout.slice(0, 600)} ${r.stderr.slice(0, 600)}`;
      return r.code === 0 ? (JSON.parse(r.stdout) as { equal: boolean; point: number }) : null;
    }, 60_000, 1000).catch((err: Error) => {
      throw new Error(`${err.message}; last verify: ${last}`);
    });
  };
  const client: NbdClient = await waitFor('NBD on site-a', () => connectNbd({ host: '127.0.0.1', port: ports.aNbd, exportName: 'vol' }));
  /** The newest closed point once the replica has acknowledged it, else null. */
  const caughtUp = async () => {
    const v = (await status(a))?.volumes[0];
    return v !== undefined && v.latestClosed !== null && v.sinks[0]?.acked === v.latestClosed ? v.latestClosed : null;
  };
  return { dir, a, b, ports, siteA, siteB, client, verify, caughtUp };
}

const disk = smallDisk('24m');
const replicaDisk = smallDisk('96m');
const commitDisk = smallDisk('96m');
const restartDisk = smallDisk('24m');
const restartReplicaDisk = smallDisk('64m');

describe.skipIf([disk, replicaDisk, commitDisk, restartDisk, restartReplicaDisk].includes(null))('a full disk', () => {
  it('on the source: refuses what does not fit, keeps what it acknowledged, and recovers once space is freed', async () => {
    mkdirSync(join(disk!, 'data'));
    const { a, siteA, siteB, client, verify } = await pairSites(join(disk!, 'data'), join(tempDir('headstart-disk-full-b-'), 'data'));

    // Acknowledged writes: 1 MiB each, random bytes, until the disk refuses one.
    const acked = new Map<number, Buffer>();
    let refused: unknown = null;
    for (let i = 0; i < 40 && refused === null; i++) {
      const data = randomBytes(MiB);
      try {
        await client.write(i * MiB, data);
        acked.set(i, data);
      } catch (err) {
        refused = err;
      }
    }
    expect(refused, 'the disk never filled up').not.toBeNull();
    expect((refused as { details?: { errno?: number } }).details?.errno).toBe(28); // ENOSPC, as the NBD spec names it
    expect(acked.size).toBeGreaterThan(4);
    // And the last bytes go to another file: LMDB can no longer commit anything new, not
    // even a snapshot point's record.
    fillDisk(disk!);

    // Scheduled closes keep coming (every 2 s) while the disk is full: the node must stay up.
    await new Promise((r) => setTimeout(r, 7_000));
    expect(siteA.process.exitCode, siteA.log().slice(-3000)).toBeNull();
    const during = await status(a);
    expect(during, 'site-a answers status with a full disk').not.toBeNull();
    // The close could not be recorded: the point stays open, retried, and status says why.
    const failing = during!.volumes[0].closeFailing;
    expect(failing, 'a close failed while the disk was full').not.toBeNull();
    expect(failing!.code).toBe('VOLUME_NO_SPACE');
    expect(failing!.attempts).toBeGreaterThan(1);
    const human = (await runCli(['status', '-c', a])).stdout;
    expect(human).toContain('CLOSE FAILING');
    expect(human).toContain('DISK FULL');
    expect(siteA.log()).toContain('the point stays open, trying again every 5 s');
    // Everything acknowledged is still there, byte for byte.
    for (const [i, data] of acked) expect(Buffer.compare(await client.read(i * MiB, MiB), data), `MiB ${i}`).toBe(0);

    // Space is freed: the delayed point closes, ships, and the replica equals the source.
    resizeDisk(disk!, '512m');
    const after = randomBytes(MiB);
    await client.write(50 * MiB, after);
    await client.flush();
    await waitFor('a close after the disk was freed', async () => {
      const s = await status(a);
      return s !== null && s.volumes[0].closeFailing === null && (s.volumes[0].latestClosed ?? 0) > (during!.volumes[0].latestClosed ?? 0) ? true : null;
    }, 30_000);
    expect((await verify()).equal).toBe(true);
    expect(Buffer.compare(await client.read(50 * MiB, MiB), after)).toBe(0);
    for (const [i, data] of acked) expect(Buffer.compare(await client.read(i * MiB, MiB), data), `MiB ${i}`).toBe(0);
    await client.close();
    expect(siteA.log()).not.toContain('Unhandled');
    expect(await stopGracefully(siteA.process)).toBe(0);
    expect(await stopGracefully(siteB.process)).toBe(0);
  }, 180_000);

  it('on the replica: staging waits for room, the source keeps its points, and the replica catches up equal', async () => {
    mkdirSync(join(replicaDisk!, 'data'));
    const { a, b, ports, siteA, siteB, client, verify, caughtUp } = await pairSites(join(tempDir('headstart-disk-full-a-'), 'data'), join(replicaDisk!, 'data'));
    const first = randomBytes(8 * MiB);
    await client.write(0, first);
    await client.flush();
    const before = await waitFor('the replica has the first 8 MiB', caughtUp, 60_000);

    fillDisk(replicaDisk!);
    const second = randomBytes(16 * MiB);
    await client.write(16 * MiB, second); // the source has room: acknowledged
    await client.flush();
    await new Promise((r) => setTimeout(r, 8_000));
    expect(siteB.process.exitCode, siteB.log().slice(-3000)).toBeNull();
    expect(siteA.process.exitCode).toBeNull();
    const waiting = (await status(a))!.volumes[0];
    expect(waiting.sinks[0].acked ?? 0).toBeLessThan(waiting.latestClosed!);
    expect(waiting.sinks[0].acked ?? 0).toBeGreaterThanOrEqual(before);
    expect(`${siteB.log()}\n${waiting.sinks[0].lastError ?? ''}`).toContain('VOLUME_NO_SPACE');
    expect(await status(b), 'site-b answers status with a full disk').not.toBeNull();
    // No room for a promotion's record either: refused, and the volume goes back into
    // service as the replica it still is (the catch-up below needs it). The source is
    // stopped first and the disk filled again: while it keeps sending, the replica drops
    // half-staged points it cannot finish (NACK), which frees room now and then, and a
    // promotion that finds room for its record rightly goes ahead.
    await client.close();
    expect(await stopGracefully(siteA.process)).toBe(0);
    fillDisk(replicaDisk!);
    const refused = await runCli(['promote', 'vol', '--force', '-c', b]).catch((err: Error) => {
      throw new Error(`${err.message}\nsite-b log: ${siteB.log().slice(-4000)}`);
    });
    expect(refused.code, refused.stdout).not.toBe(0);
    expect(refused.stderr).toContain('VOLUME_NO_SPACE');
    expect((await status(b))!.volumes[0].role).toBe('replica');

    const siteA2 = startServe(a);
    await waitServing(siteA2, a);
    const client2 = await waitFor('NBD on site-a after its restart', () => connectNbd({ host: '127.0.0.1', port: ports.aNbd, exportName: 'vol' }));
    rmSync(join(replicaDisk!, 'filler'));
    await waitFor('the replica caught up after space was freed', caughtUp, 90_000).catch(async (err: Error) => {
      throw new Error(`${err.message}\ndf: ${execFileSync('df', ['-k', replicaDisk!]).toString()}\nfiles: ${execFileSync('find', [replicaDisk!, '-type', 'f', '-printf', '%p %s %b\\n']).toString()}\nsite-a status: ${JSON.stringify((await status(a))?.volumes[0].sinks)}\nsite-b log: ${siteB.log().slice(-4000)}\nsite-a log: ${siteA2.log().slice(-3000)}`);
    });
    expect((await verify()).equal).toBe(true);
    expect(Buffer.compare(await client2.read(16 * MiB, 16 * MiB), second)).toBe(0);
    await client2.close();
    expect(siteB.log()).not.toContain('Unhandled');
    expect(await stopGracefully(siteA2.process)).toBe(0);
    expect(await stopGracefully(siteB.process)).toBe(0);
  }, 240_000);

  it('on the replica mid-commit: a half-applied point is never promoted, and the commit finishes once space is freed', async () => {
    mkdirSync(join(commitDisk!, 'data'));
    const { a, b, siteA, siteB, client, verify, caughtUp } = await pairSites(join(tempDir('headstart-disk-full-a-'), 'data'), join(commitDisk!, 'data'));
    await client.write(0, randomBytes(8 * MiB));
    await client.flush();
    const before = await waitFor('the replica has the first 8 MiB', caughtUp, 60_000);
    // Room to stage 16 MiB, not to stage them and then write them into the image too.
    fillDisk(commitDisk!, 24 * MiB);
    await client.write(16 * MiB, randomBytes(16 * MiB));
    await client.flush();
    await waitFor('a commit that fails half-way', async () => (siteB.log().includes('VOLUME_NO_SPACE') ? true : null), 30_000);
    await new Promise((r) => setTimeout(r, 3_000));
    expect(siteB.process.exitCode, siteB.log().slice(-3000)).toBeNull();
    // The stuck point is not acknowledged. (The 16 MiB can straddle a 2 s close: a first
    // part may commit on its own before the disk is too full for the rest.)
    const stuck = (await status(a))!.volumes[0];
    expect(stuck.sinks[0].acked ?? 0).toBeGreaterThanOrEqual(before);
    expect(stuck.sinks[0].acked ?? 0).toBeLessThan(stuck.latestClosed!);
    // 2 MiB freed: room for the promotion's own records, not for the rest of the commit.
    // Promoting now would hand out an image between two points: refused, and the replica
    // stays a replica, exported and in service.
    const filler = join(commitDisk!, 'filler');
    truncateSync(filler, statSync(filler).size - 2 * MiB);
    const refused = await runCli(['promote', 'vol', '--force', '-c', b]);
    expect(refused.code, refused.stdout).not.toBe(0);
    expect(refused.stderr).toContain('VOLUME_NO_SPACE');
    expect((await status(b))!.volumes[0].role).toBe('replica');

    rmSync(join(commitDisk!, 'filler'));
    await waitFor('the replica caught up after space was freed', caughtUp, 90_000);
    expect((await verify()).equal).toBe(true);
    await client.close();
    expect(await stopGracefully(siteA.process)).toBe(0);
    expect(await stopGracefully(siteB.process)).toBe(0);
  }, 240_000);

  it('restarted on a full disk (kill -9 of both sites): both come up, the source serves what it acknowledged and refuses writes, and replication resumes once space is freed', async () => {
    mkdirSync(join(restartDisk!, 'data'));
    mkdirSync(join(restartReplicaDisk!, 'data'));
    const { a, b, ports, siteA, siteB, client, verify, caughtUp } = await pairSites(join(restartDisk!, 'data'), join(restartReplicaDisk!, 'data'));
    const acked = new Map<number, Buffer>();
    const first = randomBytes(4 * MiB);
    await client.write(0, first);
    await client.flush();
    for (let i = 0; i < 4; i++) acked.set(i, first.subarray(i * MiB, (i + 1) * MiB));
    await waitFor('the replica has the first 4 MiB', caughtUp, 60_000);
    // The source's disk fills with our own writes, then with another program's file; the
    // replica's with another program's file.
    for (let i = 4; i < 40; i++) {
      const data = randomBytes(MiB);
      try {
        await client.write(i * MiB, data);
        acked.set(i, data);
      } catch {
        break;
      }
    }
    fillDisk(restartDisk!);
    fillDisk(restartReplicaDisk!);
    await client.close().catch(() => undefined);
    await killHard(siteA.process);
    await killHard(siteB.process);

    const siteA2 = startServe(a);
    const siteB2 = startServe(b);
    const statusA = await waitServing(siteA2, a);
    await waitServing(siteB2, b);
    expect(statusA.volumes[0].name).toBe('vol');
    expect((await runCli(['status', '-c', a])).stdout).toContain('DISK FULL');
    expect((await status(b))!.volumes[0].role).toBe('replica');
    const again = await waitFor('NBD on site-a after the restart', () => connectNbd({ host: '127.0.0.1', port: ports.aNbd, exportName: 'vol' }));
    for (const [i, data] of acked) expect(Buffer.compare(await again.read(i * MiB, MiB), data), `MiB ${i}`).toBe(0);
    const refused = await again.write(60 * MiB, randomBytes(4096)).then(() => null, (err: unknown) => err);
    expect(refused, 'a write on the full disk was acknowledged').not.toBeNull();
    expect((refused as { details?: { errno?: number } }).details?.errno).toBe(28);

    resizeDisk(restartDisk!, '512m');
    rmSync(join(restartReplicaDisk!, 'filler'));
    const after = randomBytes(MiB);
    await again.write(50 * MiB, after);
    await again.flush();
    await waitFor('the replica caught up after space was freed', async () => {
      const v = (await status(a))?.volumes[0];
      return v !== undefined && v.latestClosed !== null && v.closeFailing === null && v.sinks[0]?.acked === v.latestClosed && v.latestClosed > statusA.volumes[0].latestClosed! ? true : null;
    }, 90_000);
    expect((await verify()).equal).toBe(true);
    expect(Buffer.compare(await again.read(50 * MiB, MiB), after)).toBe(0);
    await again.close();
    expect(siteA2.log()).not.toContain('Unhandled');
    expect(siteB2.log()).not.toContain('Unhandled');
    expect(await stopGracefully(siteA2.process)).toBe(0);
    expect(await stopGracefully(siteB2.process)).toBe(0);
  }, 240_000);
});

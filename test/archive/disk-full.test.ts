/**
 * The archive's directory store fills up (a real tmpfs; needs root to mount it, as on the CI
 * machine, skipped where that is not allowed): the upload fails with ARCHIVE_NO_SPACE, which
 * status shows as the archive sink's last error; the node keeps the points; what the store
 * holds stays whole (`archive verify --deep`); once the store has room the archive catches
 * up and a restored image hashes like the source's point.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectNbd } from '@headstart/nbd';
import { callAdmin, loadConfig, type NodeStatus, type SinkView } from '@headstart/node';
import { freePort, runCli, startServe, stopGracefully, waitFor } from '../helpers/cli';
import { resizeDisk, smallDisk } from '../helpers/small-disk';
import { tempDir } from '../helpers/tmp';

const MiB = 1 << 20;
const SIZE = 16 * MiB;
const disk = smallDisk('4m');

async function archiveSink(config: string): Promise<SinkView | undefined> {
  const status = (await callAdmin(await loadConfig(config), 'GET', '/v1/status')) as NodeStatus;
  return status.volumes[0].sinks.find((s) => s.name === 'archive');
}

describe.skipIf(disk === null)('an archive store that fills up', () => {
  it('reports ARCHIVE_NO_SPACE, keeps what it holds whole, and catches up once it has room', async () => {
    const dir = tempDir('headstart-archive-full-');
    const ports = { nbd: await freePort(), admin: await freePort() };
    const config = join(dir, 'headstart.yaml');
    await writeFile(
      config,
      [
        'node: { name: site-a, dataDir: ./data }',
        `listen: { nbd: "127.0.0.1:${ports.nbd}", admin: "127.0.0.1:${ports.admin}" }`,
        'volumes:',
        '  - name: vol',
        `    size: ${SIZE}`,
        '    schedule: { cron: "0 0 29 2 *" }', // points by hand only (an hourly one could close mid-test)
        '    archive:',
        `      store: "dir:${join(disk!, 'archive')}"`,
        '',
      ].join('\n'),
    );
    const serve = startServe(config);
    try {
      await waitFor('the node', () => archiveSink(config), 30_000);
      const client = await waitFor('NBD', () => connectNbd({ host: '127.0.0.1', port: ports.nbd, exportName: 'vol' }));
      const snapshot = async () => ((await callAdmin(await loadConfig(config), 'POST', '/v1/volumes/vol/snapshot')) as { n: number }).n;
      // A first point that fits (1 MiB of random data), then one that does not (8 MiB on a 4 MiB store).
      await client.write(0, randomBytes(MiB));
      await client.flush();
      const small = await snapshot();
      await waitFor('the first point archived', async () => ((await archiveSink(config))?.acked === small ? true : null));
      await client.write(4 * MiB, randomBytes(8 * MiB));
      await client.flush();
      const big = await snapshot();
      const failing = await waitFor('the store to refuse', async () => {
        const s = await archiveSink(config);
        return s?.lastError?.includes('ARCHIVE_NO_SPACE') ? s : null;
      }, 30_000);
      expect(failing.acked).toBe(small);
      expect(serve.process.exitCode).toBeNull();
      // What the store holds is whole: every manifest's objects are there and check out.
      const partial = await runCli(['archive', 'verify', '--deep', '--json', '-c', config]);
      expect(partial.code, partial.stderr).toBe(0);

      resizeDisk(disk!, '64m');
      await waitFor('the archive to catch up', async () => ((await archiveSink(config))?.acked === big ? true : null), 60_000, 500);
      const image = join(dir, 'restored.raw');
      const restored = await runCli(['archive', 'restore', 'vol', String(big), '--out', image, '--json', '-c', config]);
      expect(restored.code, restored.stderr).toBe(0);
      const source = createHash('sha256');
      for (let at = 0; at < SIZE; at += MiB) source.update(await client.read(at, MiB));
      expect(createHash('sha256').update(await readFile(image)).digest('hex')).toBe(source.digest('hex'));
      const verified = await runCli(['archive', 'verify', '--deep', '--json', '-c', config]);
      expect(verified.code, verified.stderr).toBe(0);
      // Restoring onto a disk without room is the target's problem, said as such (it was
      // ARCHIVE_NO_SPACE, whose hint is about the store), and leaves no partial image.
      const tiny = smallDisk('2m')!;
      const full = await runCli(['archive', 'restore', 'vol', String(big), '--out', join(tiny, 'x.raw'), '-c', config]);
      expect(full.code).toBe(1);
      expect(full.stderr).toContain(`EXPORT_OUTPUT: restore to ${join(tiny, 'x.raw')}: no space left on the target's device`);
      expect(readdirSync(tiny)).toEqual([]);
      await client.close();
    } finally {
      expect(await stopGracefully(serve.process)).toBe(0);
    }
  }, 180_000);
});

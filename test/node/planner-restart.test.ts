/**
 * The planner across restarts, with the real CLI: what it learnt is saved in the node's data
 * directory (at each close and at shutdown) and read back when the node starts; after a
 * kill -9 in the middle of an interval it still knows every block the open snapshot changed
 * before the crash (from the write log), so its start rule counts them; a damaged save makes
 * it start cold with a warning, never keeps the node from starting.
 */
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectNbd } from '@headstart/nbd';
import type { NodeStatus } from '@headstart/node';
import { freePort, killHard, runCli, startServe, stopGracefully, waitFor, waitServing } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';

const BS = 4096;

async function status(config: string): Promise<NodeStatus | null> {
  const r = await runCli(['status', '--json', '-c', config]);
  return r.code === 0 ? (JSON.parse(r.stdout) as NodeStatus) : null;
}

describe('the planner across restarts', () => {
  it('saves what it learnt, and after kill -9 knows the open snapshot it had', async () => {
    const dir = tempDir('headstart-planner-restart-');
    const nbd = await freePort();
    const config = join(dir, 'headstart.yaml');
    const ok = async (args: string[]) => {
      const r = await runCli(args);
      expect(r.code, `headstart ${args.join(' ')}\n${r.stderr}`).toBe(0);
    };
    await ok(['init', 'node', 'site-a', '-c', config, '--nbd', `127.0.0.1:${nbd}`, '--peers', '127.0.0.1:0', '--admin', `127.0.0.1:${await freePort()}`]);
    // An hour's interval: the open snapshot outlives every restart of this test.
    await ok(['init', 'volume', 'vol', '--size', '64MiB', '--role', 'primary', '--every', '1h', '-c', config]);
    const saved = join(dir, 'data', 'planner', 'vol.learnt');
    const dirtyBytes = async () => (await status(config))?.volumes[0].planner?.dirtyBytes ?? null;
    const write = async (blocks: number[]) => {
      const c = await waitFor('NBD up', () => connectNbd({ host: '127.0.0.1', port: nbd, exportName: 'vol' }));
      for (const b of blocks) await c.write(b * BS, Buffer.alloc(BS, (b % 250) + 1));
      await c.flush();
      await c.close();
    };

    let node = startServe(config);
    await waitServing(node, config);
    await write([0, 1, 2, 100]);
    await waitFor('the planner saw the writes', async () => ((await dirtyBytes()) === 4 * BS ? true : null));
    expect((await status(config))!.volumes[0].planner!.restoredFrom).toBeNull();
    const stoppedAt = Date.now() / 1000;
    expect(await stopGracefully(node.process)).toBe(0);
    expect((await stat(saved)).size).toBeGreaterThan(0); // saved at shutdown
    expect(node.log()).not.toContain('starts from its saved model');

    node = startServe(config);
    await waitServing(node, config);
    expect(node.log()).toContain('the planner starts from its saved model');
    expect(await dirtyBytes()).toBe(4 * BS); // the open snapshot's writes, from the write log
    const resumed = (await status(config))!.volumes[0].planner!.restoredFrom!;
    expect(resumed).toBeGreaterThan(stoppedAt - 10);
    expect(resumed).toBeLessThanOrEqual(Date.now() / 1000);
    const human = await runCli(['status', '-c', config]);
    expect(human.stdout).toContain(`planner model resumed from ${new Date(resumed * 1000).toISOString()}`);
    await write([2, 3, 200]);
    await waitFor('the planner saw the new writes', async () => ((await dirtyBytes()) === 6 * BS ? true : null));
    await killHard(node.process);

    node = startServe(config);
    await waitServing(node, config);
    expect(await dirtyBytes()).toBe(6 * BS); // blocks 0-3, 100 and 200, all before the crash
    expect((await status(config))!.volumes[0].planner!.D).toBe(6 * BS);
    await killHard(node.process);

    // A damaged save: the node starts, warns, and plans from a cold model.
    const bytes = await readFile(saved);
    bytes[bytes.length >> 1] ^= 0x55;
    await writeFile(saved, bytes);
    node = startServe(config);
    await waitServing(node, config);
    expect(node.log()).toContain('saved model is unusable: it starts cold');
    expect(node.log()).toContain('PLANNER_BAD_STATE');
    expect(await dirtyBytes()).toBe(6 * BS);
    expect((await runCli(['status', '-c', config])).stdout).toContain('planner model new since start');
    expect(await stopGracefully(node.process)).toBe(0);
    // ... and saves a sound one at shutdown, which the next start takes.
    node = startServe(config);
    await waitServing(node, config);
    expect(node.log()).toContain('the planner starts from its saved model');
    expect(await stopGracefully(node.process)).toBe(0);

    // The volume's data removed by the operator: the node makes a new, empty volume of that
    // name, says loudly that one was here (its replicas refuse this empty history), and the
    // model saved for the old one (another workload) is not taken.
    expect((await stat(saved)).size).toBeGreaterThan(0);
    await rm(join(dir, 'data', 'volumes', 'vol'), { recursive: true });
    node = startServe(config);
    await waitServing(node, config);
    expect(node.log()).toContain('a volume of this name was here before and its data directory is gone: made anew, empty');
    expect(node.log()).not.toContain('the planner starts from its saved model');
    expect((await status(config))!.volumes[0].planner!.restoredFrom).toBeNull();
    expect(await stopGracefully(node.process)).toBe(0);
  }, 120_000);
});

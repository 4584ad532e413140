/**
 * A volume taken out of the configuration: the node no longer serves or replicates it, and
 * deletes nothing (its data, its points, what it keeps for its sinks). It says so at every
 * start, naming the directory; put back, the volume is served again with its data.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { validateConfig } from './config';
import { startNode } from './node';

describe('a volume removed from the configuration', () => {
  it('is not served, keeps its data, and each start says so', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hs-removed-volume-'));
    const lines: { msg?: string; volume?: string; dir?: string; level?: number }[] = [];
    const logger = pino({ level: 'info' }, new Writable({ write(chunk, _enc, done) { lines.push(JSON.parse(String(chunk))); done(); } }));
    const config = (names: string[]) => validateConfig({ node: { name: 'a', dataDir: join(dir, 'data') }, listen: { admin: '127.0.0.1:0' }, volumes: names.map((name) => ({ name, size: '1MiB' })) }, 'test', dir);
    const told = () => lines.filter((l) => l.msg?.startsWith('a volume on disk is not in the configuration'));
    try {
      let node = await startNode(config(['keep', 'gone']), logger);
      await node.volume('gone').write(0, Buffer.alloc(4096, 7));
      await node.stop();
      expect(told()).toEqual([]);

      node = await startNode(config(['keep']), logger);
      expect(node.status().volumes.map((v) => v.name)).toEqual(['keep']);
      await node.stop();
      expect(told()).toEqual([expect.objectContaining({ level: 40, volume: 'gone', dir: join(dir, 'data', 'volumes', 'gone') })]);

      node = await startNode(config(['keep', 'gone']), logger);
      expect((await node.volume('gone').read(0, 4)).toString('hex')).toBe('07070707');
      await node.stop();
      expect(told()).toHaveLength(1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

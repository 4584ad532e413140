import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectNbd } from '@headstart/nbd';
import { readTrace } from '@headstart/traces';
import { tempDir } from '../../../test/helpers/tmp';
import { validateConfig } from './config';
import { silentLogger } from './logger';
import { startNode } from './node';

describe('recording what the NBD export receives', () => {
  it('writes every write, zero and trim into a trace that the trace readers read back', async () => {
    const dir = tempDir();
    const config = validateConfig({ node: { name: 'rec' }, listen: { nbd: '127.0.0.1:0', admin: '127.0.0.1:0' }, volumes: [{ name: 'v', size: '8MiB', record: 'v.trace' }] }, 'test', dir);
    const node = await startNode(config, silentLogger());
    try {
      const c = await connectNbd({ host: '127.0.0.1', port: node.nbdPort!, exportName: 'v' });
      await c.write(4096, Buffer.alloc(8192, 1));
      await c.writeZeroes(65536, 4096);
      await c.trim(1 << 20, 4096);
      await c.read(0, 4096); // reads are not recorded
      await c.close();
    } finally {
      await node.stop();
    }
    const records = [];
    for await (const r of await readTrace(join(dir, 'v.trace'))) records.push(r);
    expect(records.map((r) => [r.op, r.offset, r.length])).toEqual([
      ['write', 4096, 8192],
      ['trim', 65536, 4096], // a zeroing, recorded as the trim it is alike to (zeroes, shipped as a flag)
      ['trim', 1 << 20, 4096],
    ]);
  });
});

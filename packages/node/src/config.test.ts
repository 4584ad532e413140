import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { isHeadstartError } from '@headstart/errors';
import { parseDuration, parseRate, parseSize, validateConfig } from './config';
import { cronSchedule, intervalSchedule } from './schedule';

function problem(raw: unknown): string {
  try {
    validateConfig(raw, 'test.yaml', '/base');
  } catch (err) {
    expect(isHeadstartError(err, 'CONFIG_INVALID')).toBe(true);
    return (err as Error).message;
  }
  throw new Error('expected CONFIG_INVALID');
}

const base = { node: { name: 'site-a', secret: 'x'.repeat(20) } };

describe('configuration', () => {
  it('parses sizes, durations and rates the way operators write them', () => {
    expect(parseSize('4GiB')).toBe(4 * 2 ** 30);
    expect(parseSize('512 MiB')).toBe(512 * 2 ** 20);
    expect(parseSize('1e6')).toBe(1e6);
    expect(parseSize('ten')).toBeNaN();
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration(2)).toBe(2000);
    expect(parseDuration('soon')).toBeNaN();
    expect(parseRate('20MB/s')).toBe(20e6);
    expect(parseRate('100Mbit/s')).toBe(12.5e6);
  });

  it('checks that the volumes of a consistency group can close and fail over together', () => {
    const peers = [{ name: 'site-b', url: 'ws://127.0.0.1:7801' }, { name: 'site-c', url: 'ws://127.0.0.1:7802' }];
    const vol = (name: string, extra: object) => ({ name, size: '1GiB', group: 'app', schedule: { every: '1m' }, sinks: ['site-b'], ...extra });
    const ok = validateConfig({ ...base, peers, volumes: [vol('wal', {}), vol('db', {}), { name: 'other', size: '1GiB' }] }, 'test.yaml', '/base');
    expect(ok.volumes.map((v) => v.group)).toEqual(['app', 'app', undefined]);
    expect(problem({ ...base, peers, volumes: [vol('wal', {}), vol('db', { schedule: { every: '5m' } })] })).toContain('volumes[1].schedule: volumes of group app close together: the same schedule as wal');
    expect(problem({ ...base, peers, volumes: [vol('wal', {}), vol('db', { sinks: ['site-b', 'site-c'] })] })).toContain('volumes[1].sinks: volumes of group app ship together: the same sinks as wal (site-b)');
    expect(problem({ ...base, peers, listen: { peers: '127.0.0.1:7800' }, volumes: [vol('wal', {}), vol('db', { role: 'replica' })] })).toContain('volumes[1].role: volumes of group app change roles together');
    const archive = { store: '/archive', retention: { daily: 7 } };
    expect(validateConfig({ ...base, peers, volumes: [vol('wal', { archive }), vol('db', { archive })] }, 'test.yaml', '/base').volumes[1].archive?.retention).toEqual({ daily: 7 });
    expect(problem({ ...base, peers, volumes: [vol('wal', { archive }), vol('db', {})] })).toContain('volumes[1].archive: volumes of group app are archived together');
    expect(problem({ ...base, peers, volumes: [vol('wal', { archive }), vol('db', { archive: { ...archive, retention: { daily: 7, maxBytes: '1GiB' } } })] })).toContain('the same archive as wal, or none on all');
    expect(problem({ ...base, volumes: [{ name: 'db', size: '1GiB', group: 'a b' }] })).toContain('volumes[0].group');
  });

  it('takes load leveling with an interval only', () => {
    const vol = (schedule: object) => ({ ...base, volumes: [{ name: 'db', size: '1GiB', schedule }] });
    expect(validateConfig(vol({ every: '15m', level: true }), 'test.yaml', '/base').volumes[0].schedule).toEqual({ every: 900_000, level: true });
    expect(problem(vol({ cron: '*/15 * * * *', level: true }))).toContain('volumes[0].schedule.level: leveling needs "every": the times of a cron schedule are the operator\'s');
    expect(problem(vol({ every: '15m', origin: '2026-01-01T00:07:00Z', level: true }))).toContain('volumes[0].schedule.level: "level" and "origin" both set when the points fall');
    expect(problem(vol({ every: '15m', level: 'yes' }))).toContain('volumes[0].schedule.level');
  });

  it('accepts a full configuration and resolves paths against its directory', () => {
    const c = validateConfig(
      {
        ...base,
        listen: { nbd: '127.0.0.1:10809', peers: '[::1]:7800' },
        peers: [{ name: 'site-b', url: 'ws://127.0.0.1:7801', rateLimit: '10MB/s' }],
        volumes: [{ name: 'db', size: '1GiB', schedule: { every: '5m' }, sinks: ['site-b'], policy: { name: 'predictive', K: 1.2, maxOpenBlocks: 1_000_000 } }],
      },
      'x.yaml',
      '/etc/headstart',
    );
    expect(c.node.dataDir).toBe('/etc/headstart/data');
    expect(c.listen.peers).toEqual({ host: '::1', port: 7800 });
    expect(c.listen.admin).toEqual({ host: '127.0.0.1', port: 7901 });
    expect(c.volumes[0]).toMatchObject({ size: 2 ** 30, blockSize: 4096, role: 'primary', schedule: { every: 300_000 } });
    expect(c.peers[0].rateLimit).toBe(10e6);
    expect(c.volumes[0].policy).toMatchObject({ K: 1.2, maxOpenBlocks: 1_000_000 });
  });

  it('names the bad key in every error', () => {
    expect(problem({ ...base, volumes: [{ name: 'v', size: 'lots' }] })).toContain('volumes[0].size: not a size');
    expect(problem({ ...base, volumes: [{ name: 'v', size: 5000 }] })).toContain('volumes[0].size: must be a multiple of the block size 4096');
    expect(problem({ ...base, volumes: [{ name: 'v', size: 4096, blockSize: 3000 }] })).toContain('volumes[0].blockSize');
    expect(problem({ ...base, volumes: [{ name: 'v', size: 4096, policy: { name: 'predictive', maxOpenBlocks: 0.5 } }] })).toContain('volumes[0].policy.maxOpenBlocks');
    expect(problem({ ...base, volumes: [{ name: 'v', size: 4096, sinks: ['nobody'] }] })).toContain('volumes[0].sinks[0]: no peer named nobody');
    expect(problem({ ...base, volumes: [{ name: 'v', size: 4096, schedule: { every: '5 minutes' } }] })).toContain('volumes[0].schedule.every: not a duration');
    expect(problem({ ...base, volumes: [{ name: 'v', size: 4096, schedule: { cron: 'not cron' } }] })).toContain('volumes[0].schedule.cron: bad cron expression');
    // A YAML number past any schedule (1e300 s is beyond a date's range) or .inf (JSON shows it as null).
    expect(problem({ ...base, volumes: [{ name: 'v', size: 4096, schedule: { every: 1e300 } }] })).toContain('volumes[0].schedule.every: 1e+300 is longer than 366d, the longest duration taken');
    expect(problem({ ...base, volumes: [{ name: 'v', size: 4096, schedule: { every: '400d' } }] })).toContain('volumes[0].schedule.every: "400d" is longer than 366d');
    // Said once, at its key: not again as an rpoTarget "not more than the interval (Infinity s)".
    for (const every of ['400d', Infinity]) expect(problem({ ...base, volumes: [{ name: 'v', size: 4096, schedule: { every }, rpoTarget: '10m' }] })).not.toContain('rpoTarget');
    expect(problem({ ...base, volumes: [{ name: 'v', size: 4096, schedule: { every: Infinity } }] })).toContain('volumes[0].schedule.every: not a duration: Infinity');
    expect(problem({ ...base, volumes: [{ name: 'v', size: Infinity }] })).toContain('volumes[0].size: not a size: Infinity');
    // YAML's .nan: the key's own message, not zod's bare "Invalid input".
    expect(problem({ ...base, volumes: [{ name: 'v', size: 4096, schedule: { every: NaN } }] })).toContain('volumes[0].schedule.every: not a duration: NaN');
    expect(problem({ ...base, volumes: [{ name: 'v', size: NaN }] })).toContain('volumes[0].size: not a size: NaN');
    expect(validateConfig({ ...base, volumes: [{ name: 'v', size: 4096, schedule: { every: '366d' } }] }, 'x.yaml', '/b').volumes[0].schedule?.every).toBe(366 * 86_400_000);
    expect(problem({ ...base, listen: { nbd: 'localhost' } })).toContain('listen.nbd: not a host:port address');
    expect(problem({ ...base, colour: 'blue' })).toContain("Unrecognized key(s) in object: 'colour'");
    expect(problem({ node: { name: 'a b' } })).toContain('node.name');
    expect(problem({ node: { name: 'a' }, peers: [{ name: 'b', url: 'ws://x:1' }] })).toContain('node.secret: peers need a pairing secret');
    expect(problem({ ...base, volumes: [{ name: 'v', size: 4096 }, { name: 'v', size: 4096 }] })).toContain('volumes[1].name: volume v is listed twice');
    expect(problem({ ...base, volumes: [{ name: 'v', size: 4096, role: 'replica' }] })).toContain('listen.peers: a node with replica volumes must listen for peers');
    expect(problem('just a string')).toContain('(top level)');
  });
});

describe('archive configuration', () => {
  const vol = (archive: unknown, extra: object = {}) => ({ ...base, volumes: [{ name: 'db', size: '16MiB', schedule: { every: '5m' }, archive, ...extra }] });
  it('resolves a directory store against the config file and keeps an s3 store as parsed', () => {
    const c = validateConfig(vol({ store: 'dir:arch', retention: { daily: 7, keepLast: 3, maxBytes: '1GiB' }, every: '1h', concurrency: 4 }), 'x.yaml', '/base');
    expect(c.volumes[0].archive).toEqual({ store: { kind: 'dir', path: '/base/arch' }, retention: { daily: 7, keepLast: 3, maxBytes: 2 ** 30 }, every: 3_600_000, concurrency: 4 });
    const s = validateConfig(vol({ store: 's3://bkt/pre/fix?endpoint=http://127.0.0.1:9000&pathStyle=true' }), 'x.yaml', '/base');
    expect(s.volumes[0].archive?.store).toMatchObject({ kind: 's3', bucket: 'bkt', prefix: 'pre/fix', endpoint: 'http://127.0.0.1:9000', forcePathStyle: true });
  });
  it('names the bad archive key', () => {
    expect(problem(vol({ store: 's3://key:secret@bkt/x' }))).toContain('volumes[0].archive.store: archive store: put credentials in the environment');
    expect(problem(vol({ store: 'ftp://x/y' }))).toContain('volumes[0].archive.store');
    expect(problem(vol({ store: '/a', retention: { daily: -1 } }))).toContain('volumes[0].archive.retention.daily');
    expect(problem(vol({ store: '/a', retention: { hourly: 3 } }))).toContain('volumes[0].archive.retention');
    expect(problem(vol({ store: '/a', every: 'often' }))).toContain('volumes[0].archive.every');
    expect(problem(vol({ store: '/a', concurrency: 0 }))).toContain('volumes[0].archive.concurrency');
    expect(problem(vol({ store: '/a', accessKey: 'AKIA' }))).toContain('volumes[0].archive');
    expect(problem(vol({ store: '/a' }, { schedule: undefined }))).toContain('volumes[0].schedule');
  });
});

describe('schedules', () => {
  it('aligns intervals to the clock', () => {
    const s = intervalSchedule(300_000);
    expect(s.nextAfter(Date.UTC(2026, 0, 1, 10, 2, 0))).toBe(Date.UTC(2026, 0, 1, 10, 5, 0));
    expect(s.nextAfter(Date.UTC(2026, 0, 1, 10, 5, 0))).toBe(Date.UTC(2026, 0, 1, 10, 10, 0));
  });
  it('follows cron windows', () => {
    const s = cronSchedule('0 9-17 * * 1-5');
    const friday6pm = new Date(2026, 10, 27, 18, 0, 0).getTime(); // a Friday
    expect(new Date(s.nextAfter(friday6pm)).getDay()).toBe(1); // next Monday 09:00
    expect(new Date(s.nextAfter(friday6pm)).getHours()).toBe(9);
  });
});

describe('docs/configuration.md', () => {
  it('its example configuration, with every key, is a valid configuration', () => {
    const doc = readFileSync(new URL('../../../docs/configuration.md', import.meta.url), 'utf8');
    const example = /```yaml\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(example).toBeDefined();
    const c = validateConfig(parseYaml(example!), 'docs/configuration.md', '/base');
    expect(c.volumes[0].verify?.replica).toMatch(/^nbd:\/\//);
    expect(c.peers[0]).toMatchObject({ verifyHost: true, compress: false });
  });
});

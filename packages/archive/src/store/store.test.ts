import { existsSync } from 'node:fs';
/**
 * The ObjectStore compliance suite: one set of tests, run against every backend (the
 * directory, and S3 against a real s3rver on loopback). Each test asserts the contract
 * written in store/types.ts.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isHeadstartError } from '@headstart/errors';
import { withRetry } from '../retry';
import { startTestS3, TEST_CREDENTIALS, type TestS3 } from '../testing/s3-server';
import { openDirectoryStore } from './directory';
import { openS3Store } from './s3';
import type { ObjectStore } from './types';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

let s3: TestS3;
let tmp: string;
beforeAll(async () => {
  s3 = await startTestS3();
  tmp = await mkdtemp(join(tmpdir(), 'hs-store-'));
});
afterAll(async () => {
  await s3?.stop();
  await rm(tmp, { recursive: true, force: true });
});

let seq = 0;
const backends: [string, () => Promise<ObjectStore>][] = [
  ['directory', () => openDirectoryStore({ path: join(tmp, `d${seq++}`) })],
  ['s3', async () => openS3Store({ bucket: s3.bucket, prefix: `p${seq++}/x`, endpoint: s3.endpoint, region: 'us-east-1', credentials: TEST_CREDENTIALS })],
];

const code = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    return isHeadstartError(err) ? err.code : `not a HeadstartError: ${String(err)}`;
  }
  return 'resolved';
};

describe.each(backends)('ObjectStore compliance: %s', (_name, open) => {
  it('put then get returns the same bytes; put replaces', async () => {
    const store = await open();
    const data = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31) & 255));
    await store.put('a/b/c.f', data);
    expect((await store.get('a/b/c.f')).equals(data)).toBe(true);
    await store.put('a/b/c.f', Buffer.from('second'));
    expect((await store.get('a/b/c.f')).toString()).toBe('second');
    await store.put('empty', Buffer.alloc(0));
    expect((await store.get('empty')).length).toBe(0);
    await store.close();
  });

  it('get of a missing key rejects with ARCHIVE_NOT_FOUND; head gives null', async () => {
    const store = await open();
    expect(await code(store.get('nope/x'))).toBe('ARCHIVE_NOT_FOUND');
    expect(await store.head('nope/x')).toBeNull();
    await store.put('here', Buffer.from('12345'));
    expect(await store.head('here')).toEqual({ key: 'here', size: 5 });
    await store.close();
  });

  it('list returns every key under a string prefix, ascending, with sizes', async () => {
    const store = await open();
    const keys = ['v/m/0002', 'v/m/0001', 'v/o/0000000001/1.f', 'v/o/0000000000/3.d', 'w/m/0001', 'v/m/0010'];
    for (const [i, k] of keys.entries()) await store.put(k, Buffer.alloc(i + 1));
    expect((await store.list('v/m/')).map((o) => o.key)).toEqual(['v/m/0001', 'v/m/0002', 'v/m/0010']);
    expect((await store.list('v/m/000')).map((o) => [o.key, o.size])).toEqual([['v/m/0001', 2], ['v/m/0002', 1]]);
    expect((await store.list('v/')).length).toBe(5);
    expect((await store.list('')).map((o) => o.key)).toEqual([...keys].sort());
    expect(await store.list('zzz/')).toEqual([]);
    await store.close();
  });

  it('delete removes and is idempotent', async () => {
    const store = await open();
    await store.put('k/1', Buffer.from('x'));
    await store.delete('k/1');
    await store.delete('k/1');
    await store.delete('never/was');
    expect(await store.head('k/1')).toBeNull();
    expect(await store.list('k/')).toEqual([]);
    await store.close();
  });

  it('rejects bad keys with ARCHIVE_BAD_KEY and touches nothing', async () => {
    const store = await open();
    for (const bad of ['', '/abs', 'a//b', '../up', 'a/../b', 'a/./b', 'sp ace', 'a/', 'x\u0000y', '.tmp-x']) {
      expect(await code(store.put(bad, Buffer.from('x'))), bad).toBe('ARCHIVE_BAD_KEY');
      expect(await code(store.get(bad)), bad).toBe('ARCHIVE_BAD_KEY');
    }
    expect(await code(store.list('../'))).toBe('ARCHIVE_BAD_KEY');
    expect(await store.list('')).toEqual([]);
    await store.close();
  });

  it('an aborted signal rejects with ARCHIVE_ABORTED', async () => {
    const store = await open();
    const ac = new AbortController();
    ac.abort();
    expect(await code(store.put('k', Buffer.from('x'), { signal: ac.signal }))).toBe('ARCHIVE_ABORTED');
    expect(await code(store.get('k', { signal: ac.signal }))).toBe('ARCHIVE_ABORTED');
    await store.close();
  });

  it('concurrent puts of many objects all land', async () => {
    const store = await open();
    await Promise.all(Array.from({ length: 40 }, (_, i) => store.put(`c/${String(i).padStart(3, '0')}`, Buffer.alloc(1000 + i, i))));
    const listed = await store.list('c/');
    expect(listed.length).toBe(40);
    expect(listed[7]).toEqual({ key: 'c/007', size: 1007 });
    expect((await store.get('c/039'))[0]).toBe(39);
    await store.close();
  });
});

describe('directory backend specifics', () => {
  it('leaves no temp file behind and never lists one', async () => {
    const path = join(tmp, 'atomic');
    const store = await openDirectoryStore({ path });
    await store.put('x/y', Buffer.from('data'));
    expect(await readdir(join(path, 'x'))).toEqual(['y']);
    // A crash mid-put leaves a temp file: it is no object.
    await writeFile(join(path, 'x', '.tmp-deadbeef'), 'partial');
    expect((await store.list('')).map((o) => o.key)).toEqual(['x/y']);
    await store.close();
  });
});

describe('S3 backend specifics', () => {
  it("Debian's aws cli sees the objects the store wrote", async () => {
    const store = openS3Store({ bucket: s3.bucket, prefix: 'cli-check', endpoint: s3.endpoint, credentials: TEST_CREDENTIALS });
    await store.put('vol1/manifests/0000000000000001', Buffer.alloc(123, 1));
    const { stdout } = await promisify(execFile)(existsSync('/usr/bin/aws') ? '/usr/bin/aws' : 'aws', ['s3', 'ls', '--recursive', '--endpoint-url', s3.endpoint, `s3://${s3.bucket}/cli-check/`], {
      env: { ...process.env, AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey, AWS_DEFAULT_REGION: 'us-east-1', AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null' },
    });
    expect(stdout).toMatch(/\s123 cli-check\/vol1\/manifests\/0000000000000001\n/);
    await store.close();
  });

  it('throttling and 5xx are ARCHIVE_STORE_IO (retryable) and withRetry gets through them', async () => {
    const store = openS3Store({ bucket: s3.bucket, prefix: 'faults', endpoint: s3.proxyEndpoint, credentials: TEST_CREDENTIALS });
    s3.failNext(1, 503);
    expect(await code(store.put('k', Buffer.from('v')))).toBe('ARCHIVE_STORE_IO');
    s3.failNext(3, 500);
    let retries = 0;
    await withRetry(() => store.put('k', Buffer.from('v')), { baseDelayMs: 5, onRetry: () => retries++ });
    expect(retries).toBe(3);
    expect((await store.get('k')).toString()).toBe('v');
    s3.failNext(10, 503);
    expect(await code(withRetry(() => store.get('k'), { attempts: 3, baseDelayMs: 1 }))).toBe('ARCHIVE_STORE_IO');
    s3.failNext(0, 503);
    await store.close();
  });

  it('a request that outlives the timeout is ARCHIVE_STORE_IO and is retried', async () => {
    const store = openS3Store({ bucket: s3.bucket, prefix: 'slow', endpoint: s3.proxyEndpoint, credentials: TEST_CREDENTIALS, requestTimeoutMs: 200 });
    await store.put('k', Buffer.from('v'));
    s3.stallNext(1, 1000);
    expect(await code(store.get('k'))).toBe('ARCHIVE_STORE_IO');
    s3.stallNext(1, 1000);
    expect((await withRetry(() => store.get('k'), { baseDelayMs: 1 })).toString()).toBe('v');
    await store.close();
  });

  it('a missing bucket is ARCHIVE_STORE_DENIED (not retryable)', async () => {
    const store = openS3Store({ bucket: 'no-such-bucket', endpoint: s3.endpoint, credentials: TEST_CREDENTIALS });
    const err = await store.put('k', Buffer.from('v')).then(() => null, (e: unknown) => e);
    expect(isHeadstartError(err, 'ARCHIVE_STORE_DENIED')).toBe(true);
    expect(isHeadstartError(err) && err.retryable).toBe(false);
    await store.close();
  });

  it('rejects a bad bucket name with ARCHIVE_CONFIG', () => {
    expect(() => openS3Store({ bucket: 'Bad_Bucket' })).toThrow(expect.objectContaining({ code: 'ARCHIVE_CONFIG' }));
  });
});

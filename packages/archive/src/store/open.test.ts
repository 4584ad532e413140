import { describe, expect, it } from 'vitest';
import { parseStoreUrl } from './open';

describe('parseStoreUrl', () => {
  it('reads directory paths and s3 URLs', () => {
    expect(parseStoreUrl('/var/lib/hs')).toEqual({ kind: 'dir', path: '/var/lib/hs' });
    expect(parseStoreUrl('dir:rel/path')).toEqual({ kind: 'dir', path: 'rel/path' });
    expect(parseStoreUrl('s3://my-bucket')).toEqual({ kind: 's3', bucket: 'my-bucket', prefix: '' });
    expect(parseStoreUrl('s3://my-bucket/a/b/?endpoint=http://127.0.0.1:9000&region=eu-west-1&pathStyle=true')).toEqual({
      kind: 's3',
      bucket: 'my-bucket',
      prefix: 'a/b',
      endpoint: 'http://127.0.0.1:9000',
      region: 'eu-west-1',
      forcePathStyle: true,
    });
  });

  it('refuses what it cannot honour, with ARCHIVE_CONFIG', () => {
    for (const bad of ['', 's3://b/x?endpoint=notaurl', 's3://b/x?endpoint=127.0.0.1:9000', 's3://key:secret@bucket/x', 's3://b/x?colour=red', 's3://b?pathStyle=yes', 'http://example.com/x', 'gs://bucket']) {
      expect(() => parseStoreUrl(bad), bad).toThrow(expect.objectContaining({ code: 'ARCHIVE_CONFIG' }));
    }
  });
});

describe('S3 store without credentials', () => {
  it('says so as ARCHIVE_STORE_DENIED (not a retryable store failure)', async () => {
    const { openS3Store } = await import('./s3');
    const { isHeadstartError } = await import('@headstart/errors');
    const saved = { ...process.env };
    for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI', 'AWS_CONTAINER_CREDENTIALS_FULL_URI']) delete process.env[k];
    process.env.AWS_SHARED_CREDENTIALS_FILE = '/nonexistent/credentials';
    process.env.AWS_CONFIG_FILE = '/nonexistent/config';
    process.env.AWS_EC2_METADATA_DISABLED = 'true';
    try {
      const store = openS3Store({ bucket: 'archive-test', endpoint: 'http://127.0.0.1:1' });
      const err = await store.list('').then(() => null, (e: unknown) => e);
      expect(isHeadstartError(err, 'ARCHIVE_STORE_DENIED'), String(err)).toBe(true);
      await store.close();
    } finally {
      process.env = saved;
    }
  });
});

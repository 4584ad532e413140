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
    for (const bad of ['', 's3://key:secret@bucket/x', 's3://b/x?colour=red', 's3://b?pathStyle=yes', 'http://example.com/x', 'gs://bucket']) {
      expect(() => parseStoreUrl(bad), bad).toThrow(expect.objectContaining({ code: 'ARCHIVE_CONFIG' }));
    }
  });
});

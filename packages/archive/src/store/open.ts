/**
 * One way to name a store, for configuration files and the CLI (`--store`):
 *   /var/lib/headstart/archive  or  dir:/var/lib/headstart/archive   the directory backend
 *   s3://bucket/some/prefix?endpoint=http://127.0.0.1:9000&region=eu-west-1&pathStyle=true
 * Credentials never go in the URL: they come from the SDK's default chain (environment,
 * ~/.aws, instance role) or from `credentials` in the options object.
 */
import { HeadstartError } from '@headstart/errors';
import { openDirectoryStore, type DirectoryStoreOptions } from './directory';
import { openS3Store, type S3StoreOptions } from './s3';
import type { ObjectStore } from './types';

export type StoreSpec = ({ readonly kind: 'dir' } & DirectoryStoreOptions) | ({ readonly kind: 's3' } & S3StoreOptions);

export function parseStoreUrl(url: string): StoreSpec {
  if (typeof url !== 'string' || url.trim() === '') throw new HeadstartError('ARCHIVE_CONFIG', 'archive store: empty location');
  if (url.startsWith('s3://')) {
    let u: URL;
    try {
      u = new URL(url);
    } catch (cause) {
      throw new HeadstartError('ARCHIVE_CONFIG', `archive store: ${JSON.stringify(url)} is not a valid s3:// URL`, { cause });
    }
    if (u.username !== '' || u.password !== '') throw new HeadstartError('ARCHIVE_CONFIG', 'archive store: put credentials in the environment or ~/.aws, never in the URL');
    const known = new Set(['endpoint', 'region', 'pathStyle']);
    for (const k of u.searchParams.keys()) if (!known.has(k)) throw new HeadstartError('ARCHIVE_CONFIG', `archive store: unknown s3 URL option ${JSON.stringify(k)} (known: endpoint, region, pathStyle)`);
    const pathStyle = u.searchParams.get('pathStyle');
    if (pathStyle !== null && pathStyle !== 'true' && pathStyle !== 'false') throw new HeadstartError('ARCHIVE_CONFIG', 'archive store: pathStyle must be true or false');
    const endpoint = u.searchParams.get('endpoint');
    // A bad endpoint is a configuration mistake: caught here, not retried for ever as a store failure.
    if (endpoint !== null && !/^https?:\/\/[^/?#]+/i.test(endpoint)) throw new HeadstartError('ARCHIVE_CONFIG', `archive store: endpoint ${JSON.stringify(endpoint)} is not an http:// or https:// URL`);
    if (endpoint !== null) {
      try {
        new URL(endpoint);
      } catch (cause) {
        throw new HeadstartError('ARCHIVE_CONFIG', `archive store: endpoint ${JSON.stringify(endpoint)} is not a valid URL`, { cause });
      }
    }
    const region = u.searchParams.get('region');
    return {
      kind: 's3',
      bucket: u.hostname,
      prefix: decodeURIComponent(u.pathname).replace(/^\/+|\/+$/g, ''),
      ...(endpoint !== null ? { endpoint } : {}),
      ...(region !== null ? { region } : {}),
      ...(pathStyle !== null ? { forcePathStyle: pathStyle === 'true' } : {}),
    };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) throw new HeadstartError('ARCHIVE_CONFIG', `archive store: unsupported scheme in ${JSON.stringify(url)} (use a directory path, dir:PATH or s3://bucket/prefix)`);
  return { kind: 'dir', path: url.startsWith('dir:') ? url.slice(4) : url };
}

export async function openStore(spec: StoreSpec | string): Promise<ObjectStore> {
  const s = typeof spec === 'string' ? parseStoreUrl(spec) : spec;
  return s.kind === 'dir' ? openDirectoryStore(s) : openS3Store(s);
}

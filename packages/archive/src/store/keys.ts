import { HeadstartError } from '@headstart/errors';

/** Key segments are plain names so they map 1:1 onto file names and S3 keys alike. */
const SEGMENT = /^[A-Za-z0-9._-]+$/;

export function checkKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > 900) {
    throw new HeadstartError('ARCHIVE_BAD_KEY', `object key must be a non-empty string under 900 characters`);
  }
  for (const seg of key.split('/')) {
    if (!SEGMENT.test(seg) || seg === '.' || seg === '..' || seg.startsWith('.tmp-')) {
      throw new HeadstartError('ARCHIVE_BAD_KEY', `bad object key ${JSON.stringify(key)}`);
    }
  }
  return key;
}

export function checkPrefix(prefix: unknown): string {
  if (typeof prefix !== 'string' || prefix.length > 900 || /[^A-Za-z0-9._/-]/.test(prefix) || prefix.startsWith('/') || prefix.split('/').some((s) => s === '..' || s === '.')) {
    throw new HeadstartError('ARCHIVE_BAD_KEY', `bad list prefix ${JSON.stringify(prefix)}`);
  }
  return prefix;
}

export function aborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new HeadstartError('ARCHIVE_ABORTED', `${what}: cancelled`, { cause: signal.reason });
}

import { readFile } from 'node:fs/promises';
import { HeadstartError } from '@headstart/errors';

/**
 * TLS material given as a PEM file's path or its content (what both ends accept: the
 * replica's certificate and key, the source's CA or pinned peer certificate).
 */
export async function pem(v: string | Buffer): Promise<Buffer> {
  if (Buffer.isBuffer(v)) return v;
  if (v.includes('-----BEGIN')) return Buffer.from(v);
  try {
    return await readFile(v);
  } catch (err) {
    throw new HeadstartError('LINK_TLS_CONFIG', `cannot read TLS file ${v}: ${(err as Error).message}`, { cause: err });
  }
}

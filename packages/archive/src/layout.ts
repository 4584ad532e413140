/**
 * Where things live in the store, per volume:
 *
 *   <volume>/manifests/<n, 16 digits>                 one per archived point, written last
 *   <volume>/objects/<chunk, 10 digits>/<n>.<f|d>     full chunk object / delta object of point n
 *   <volume>/protected/<n>                            empty marker: retention never deletes point n
 *
 * Zero-padded numbers make the store's ascending key order the numeric order. An object's
 * key is a function of (chunk, point, kind), so re-running an interrupted upload of point
 * n rewrites the same keys with the same bytes (idempotent) instead of leaking new ones.
 */
import { HeadstartError } from '@headstart/errors';
import { KIND_FULL } from './format/envelope';
import type { ObjectRef } from './format/chunk';

const VOLUME_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

export function checkVolumeId(id: unknown): string {
  if (typeof id !== 'string' || !VOLUME_ID.test(id)) throw new HeadstartError('ARCHIVE_CONFIG', `volume id ${JSON.stringify(id)} cannot name archive objects (use [A-Za-z0-9._-], at most 128)`);
  return id;
}

const pad = (n: number, w: number) => String(n).padStart(w, '0');

export const manifestPrefix = (vol: string) => `${vol}/manifests/`;
export const manifestKey = (vol: string, n: number) => `${vol}/manifests/${pad(n, 16)}`;
export const objectsPrefix = (vol: string) => `${vol}/objects/`;
export const objectKey = (vol: string, chunk: number, ref: ObjectRef) => `${vol}/objects/${pad(chunk, 10)}/${pad(ref.point, 16)}.${ref.kind === KIND_FULL ? 'f' : 'd'}`;
export const protectedPrefix = (vol: string) => `${vol}/protected/`;
export const protectedKey = (vol: string, n: number) => `${vol}/protected/${pad(n, 16)}`;

/** The point number in a manifest or protected-marker key, or null for a foreign key. */
export function pointOfKey(key: string, prefix: string): number | null {
  if (!key.startsWith(prefix)) return null;
  const rest = key.slice(prefix.length);
  return /^\d{16}$/.test(rest) ? Number(rest) : null;
}

/** The (chunk, point) of an object key, or null for a foreign key. */
export function parseObjectKey(vol: string, key: string): { chunk: number; point: number } | null {
  const m = /^(\d{10})\/(\d{16})\.[fd]$/.exec(key.slice(objectsPrefix(vol).length));
  return key.startsWith(objectsPrefix(vol)) && m !== null ? { chunk: Number(m[1]), point: Number(m[2]) } : null;
}

/** Volumes with anything archived: the first key segment of every manifest. */
export function volumesOfKeys(keys: readonly string[]): string[] {
  const out = new Set<string>();
  for (const k of keys) {
    const m = /^([^/]+)\/manifests\/\d{16}$/.exec(k);
    if (m !== null) out.add(m[1]);
  }
  return [...out].sort();
}

/** Marker that point n's upload is under way (see sink.ts). */
export const pendingPrefix = (vol: string) => `${vol}/pending/`;
export const pendingKey = (vol: string, n: number) => `${vol}/pending/${pad(n, 16)}`;

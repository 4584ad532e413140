/**
 * Shape checks for decoded msgpack. A decoded frame is untyped input from the network:
 * every field is checked here before any code sees it, and nothing is ever cast.
 * Each check throws LINK_MALFORMED_FRAME naming the field, so the peer's error says what.
 */
import { HeadstartError } from '@headstart/errors';
import { MAX_TEXT } from './constants';

export type Obj = Readonly<Record<string, unknown>>;

export function malformed(what: string): HeadstartError {
  return new HeadstartError('LINK_MALFORMED_FRAME', `malformed frame: ${what}`);
}

export function obj(v: unknown, what: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) throw malformed(`${what} must be a map`);
  return v as Obj; // a plain record: each field is checked by the caller before use
}

/** A non-negative safe integer (block numbers, snapshot numbers, sequence numbers, times). */
export function uint(v: unknown, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) throw malformed(`${what} must be an integer in [0, ${max}]`);
  return v;
}

export function bool(v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') throw malformed(`${what} must be a boolean`);
  return v;
}

export function text(v: unknown, what: string, max = MAX_TEXT): string {
  if (typeof v !== 'string' || v.length > max) throw malformed(`${what} must be a string of at most ${max} characters`);
  return v;
}

export function bytes(v: unknown, what: string, opts: { len?: number; max?: number; multipleOf?: number } = {}): Uint8Array {
  if (!(v instanceof Uint8Array)) throw malformed(`${what} must be binary`);
  if (opts.len !== undefined && v.length !== opts.len) throw malformed(`${what} must be ${opts.len} bytes`);
  if (opts.max !== undefined && v.length > opts.max) throw malformed(`${what} must be at most ${opts.max} bytes`);
  if (opts.multipleOf !== undefined && v.length % opts.multipleOf !== 0) throw malformed(`${what} length must be a multiple of ${opts.multipleOf}`);
  return v;
}

export function list(v: unknown, what: string, max: number): readonly unknown[] {
  if (!Array.isArray(v)) throw malformed(`${what} must be a list`);
  if (v.length > max) throw malformed(`${what} has more than ${max} entries`);
  return v;
}

export function oneOf<T extends string>(v: unknown, what: string, values: readonly T[]): T {
  const found = values.find((x) => x === v);
  if (found === undefined) throw malformed(`${what} must be one of ${values.join(', ')}`);
  return found;
}

import xxhash from 'xxhash-wasm';

/** xxh64 (seed 0), the checksum every archive object carries; the link uses the same. */
export interface Hasher {
  h64(data: Uint8Array): bigint;
}

let loading: Promise<Hasher> | undefined;

/** The WebAssembly module loads once per process; every later call is synchronous. */
export function loadHasher(): Promise<Hasher> {
  loading ??= xxhash().then((x) => ({ h64: (data: Uint8Array) => x.h64Raw(data) }));
  return loading;
}

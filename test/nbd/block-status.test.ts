/**
 * The base:allocation metadata context and NBD_CMD_BLOCK_STATUS, driven by Debian's real
 * clients (nbdinfo --map, qemu-img map, nbdcopy, libnbd's Python binding) and, for what
 * those clients never send (a SET without structured replies, BLOCK_STATUS without a
 * context, bad option data), by a raw socket. The server answers every range "allocated,
 * contents unknown" (status 0): one extent covering the whole export, type "data".
 */
import { connect, type Socket } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PY_ERRNO, byteReader, nbdPython, option, requestHeader, run, startRig, type Rig } from './helpers';

const MiB = 1024 * 1024;
const SIZE = 24 * MiB;

describe('base:allocation and NBD_CMD_BLOCK_STATUS', () => {
  let rig: Rig;
  /** What the export holds: a pattern, zeroes written, a trimmed range, and never-written space. */
  let expected: Buffer;
  beforeAll(async () => {
    rig = await startRig(SIZE);
    expected = Buffer.alloc(SIZE);
    for (let i = 0; i < 2 * MiB; i++) expected[i] = (i * 31 + 7) & 0xff;
    expected.fill(0x5e, 9 * MiB, 9 * MiB + 12345);
    await rig.volume.write(0, expected.subarray(0, 2 * MiB));
    await rig.volume.write(9 * MiB, expected.subarray(9 * MiB, 9 * MiB + 12345));
    await rig.volume.writeZeroes(MiB, 64 * 1024);
    expected.fill(0, MiB, MiB + 64 * 1024);
    await rig.volume.trim(9 * MiB + 4096, 4096);
    expected.fill(0, 9 * MiB + 4096, 9 * MiB + 8192);
    const ro = await rig.newVolume('ro', 4 * MiB);
    rig.server.addExport('ro', ro, { readOnly: true, description: 'read-only copy' });
  });
  afterAll(async () => {
    await rig?.close();
  });

  it('nbdinfo --map and --map --totals show one data extent over the whole export', async () => {
    const map = await run('nbdinfo', ['--map', rig.uri()]);
    expect(map.stderr).toBe('');
    expect(map.code).toBe(0);
    const lines = map.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0].trim().split(/\s+/)).toEqual(['0', String(SIZE), '0', 'data']);
    const totals = await run('nbdinfo', ['--map', '--totals', rig.uri()]);
    expect(totals.stderr).toBe('');
    expect(totals.code).toBe(0);
    expect(totals.stdout.trim().split('\n')).toHaveLength(1);
    expect(totals.stdout.trim().split(/\s+/)).toEqual([String(SIZE), '100.0%', '0', 'data']);
    // The same on a read-only export, and with the context named explicitly.
    const ro = await run('nbdinfo', ['--map=base:allocation', rig.uri('ro')]);
    expect(ro.code).toBe(0);
    expect(ro.stdout.trim().split(/\s+/)).toEqual(['0', String(4 * MiB), '0', 'data']);
  });

  it('nbdinfo --json and --list still work and show the context', async () => {
    const json = await run('nbdinfo', ['--json', rig.uri()]);
    expect(json.code).toBe(0);
    const info = JSON.parse(json.stdout) as { structured: boolean; exports: { 'export-name': string; 'export-size': number; contexts?: string[]; is_read_only: boolean; can_zero: boolean }[] };
    expect(info.structured).toBe(true);
    expect(info.exports).toHaveLength(1);
    expect(info.exports[0]).toMatchObject({ 'export-name': 'vol', 'export-size': SIZE, contexts: ['base:allocation'], is_read_only: false, can_zero: true });
    const list = await run('nbdinfo', ['--list', `nbd://127.0.0.1:${rig.server.port}`]);
    expect(list.stderr).toBe('');
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/export="vol":/);
    expect(list.stdout).toMatch(/export="ro":/);
    expect(list.stdout).toMatch(/description: read-only copy/);
    expect(list.stdout).toMatch(/base:allocation/);
    const listJson = await run('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${rig.server.port}`]);
    expect(listJson.code).toBe(0);
    const exports = (JSON.parse(listJson.stdout) as { exports: { 'export-name': string; 'export-size': number; is_read_only: boolean; contexts?: string[] }[] }).exports;
    expect(Object.fromEntries(exports.map((e) => [e['export-name'], [e['export-size'], e.is_read_only, e.contexts]]))).toEqual({
      vol: [SIZE, false, ['base:allocation']],
      ro: [4 * MiB, true, ['base:allocation']],
    });
  });

  it('qemu-img map reports the whole export as data, and nbdcopy copies it byte for byte', async () => {
    const map = await run('qemu-img', ['map', '--output=json', '-f', 'raw', rig.uri()]);
    expect(map.stderr).toBe('');
    expect(map.code).toBe(0);
    expect(JSON.parse(map.stdout)).toEqual([{ start: 0, length: SIZE, depth: 0, present: true, zero: false, data: true, offset: 0 }]);
    const out = join(rig.dir, 'copy.img');
    const copy = await run('nbdcopy', [rig.uri(), out], { timeoutMs: 60_000 });
    expect(copy.stderr).toBe('');
    expect(copy.code).toBe(0);
    const copied = await readFile(out);
    expect(copied.length).toBe(SIZE);
    expect(copied.equals(expected)).toBe(true);
    expect(copied.equals(await rig.volume.read(0, SIZE))).toBe(true);
  });

  it('libnbd: add_meta_context("base:allocation") negotiates it and block_status covers the range', async () => {
    const out = await nbdPython(`
h = nbd.NBD()
h.add_meta_context("base:allocation")
h.connect_uri(${JSON.stringify(rig.uri())})
out = {'structured': h.get_structured_replies_negotiated(), 'can': h.can_meta_context("base:allocation"), 'size': h.get_size()}
def status(count, offset, flags=0):
    got = []
    def cb(metacontext, off, entries, err):
        got.append([metacontext, off, list(entries)])
        return 0
    h.block_status(count, offset, cb, flags)
    return got
size = h.get_size()
out['whole'] = status(size, 0)
out['middle'] = status(65536 + 3, 12345)
out['tail'] = status(4096, size - 4096)
out['last_byte'] = status(1, size - 1)
out['req_one'] = status(1048576, 4096, nbd.CMD_FLAG_REQ_ONE)
out['req_one_whole'] = status(size, 0, nbd.CMD_FLAG_REQ_ONE)
# Zeroes written and a trim do not turn into holes or zero extents: the answer stays 0.
h.zero(65536, 2 * 1048576)
h.trim(65536, 3 * 1048576)
out['after_zero_trim'] = status(4 * 1048576, 1048576)
out['read'] = h.pread(4, 0) == bytes([7, 38, 69, 100])
# Requests the server must refuse (client-side checks off so they reach it).
h.set_strict_mode(0)
${PY_ERRNO}
out['beyond_end'] = err(lambda: status(8192, size - 4096))
out['huge_offset'] = err(lambda: status(512, 2**62))
out['zero_length'] = err(lambda: status(0, 4096))
out['still_ok'] = status(512, 0)
h.shutdown()
print(json.dumps(out))
`);
    const one = (offset: number, length: number) => [['base:allocation', offset, [length, 0]]];
    expect(out).toEqual({
      structured: true,
      can: true,
      size: SIZE,
      whole: one(0, SIZE),
      middle: one(12345, 65536 + 3),
      tail: one(SIZE - 4096, 4096),
      last_byte: one(SIZE - 1, 1),
      req_one: one(4096, MiB),
      req_one_whole: one(0, SIZE),
      after_zero_trim: one(MiB, 4 * MiB),
      read: true,
      beyond_end: 22,
      huge_offset: 22,
      zero_length: 22,
      still_ok: one(0, 512),
    });
  });

  it('libnbd: LIST_META_CONTEXT answers "base:", "base:allocation" and no query, and nothing for unknown contexts', async () => {
    const out = await nbdPython(`
h = nbd.NBD()
h.set_opt_mode(True)
h.connect_uri(${JSON.stringify(rig.uri())})
def listed(queries):
    h.clear_meta_contexts()
    for q in queries:
        h.add_meta_context(q)
    names = []
    n = h.opt_list_meta_context(lambda name: names.append(name))
    return [n, names]
out = {}
out['all'] = listed([])
out['namespace'] = listed(['base:'])
out['exact'] = listed(['base:allocation'])
out['unknown'] = listed(['base:nope', 'x-foo:bar', 'qemu:dirty-bitmap:b'])
out['mixed'] = listed(['x-foo:bar', 'base:allocation', 'base:'])
h.clear_meta_contexts()
h.add_meta_context('x-foo:bar')
h.add_meta_context('base:allocation')
h.opt_go()
out['can'] = h.can_meta_context('base:allocation')
out['can_unknown'] = h.can_meta_context('x-foo:bar')
got = []
h.block_status(4096, 0, lambda ctx, off, entries, err: got.append([ctx, off, list(entries)]) or 0)
out['status'] = got
h.shutdown()
print(json.dumps(out))
`);
    expect(out).toEqual({
      all: [1, ['base:allocation']],
      namespace: [1, ['base:allocation']],
      exact: [1, ['base:allocation']],
      unknown: [0, []],
      mixed: [1, ['base:allocation']],
      can: true,
      can_unknown: false,
      status: [['base:allocation', 0, [4096, 0]]],
    });
  });

  it('libnbd: clients that do not ask for the context (or cannot have it) work as before', async () => {
    const out = await nbdPython(`
out = {}
uri = ${JSON.stringify(rig.uri())}
# No add_meta_context: structured replies, no context, reads and writes as always.
h = nbd.NBD()
h.connect_uri(uri)
out['plain'] = [h.get_structured_replies_negotiated(), h.can_meta_context('base:allocation')]
h.pwrite(b'\\xa5' * 4096, 20 * 1048576)
out['plain_rw'] = h.pread(4096, 20 * 1048576) == b'\\xa5' * 4096
try:
    h.block_status(4096, 0, lambda *a: 0)
    out['plain_status'] = 'answered'
except nbd.Error:
    out['plain_status'] = 'refused'
h.shutdown()
# Asks for the context but refuses structured replies: libnbd then does not ask, and the
# connection is an ordinary simple-reply one.
h = nbd.NBD()
h.set_request_structured_replies(False)
h.add_meta_context('base:allocation')
h.connect_uri(uri)
out['simple'] = [h.get_structured_replies_negotiated(), h.can_meta_context('base:allocation')]
out['simple_rw'] = h.pread(4096, 20 * 1048576) == b'\\xa5' * 4096
h.shutdown()
print(json.dumps(out))
`);
    expect(out).toEqual({ plain: [true, false], plain_rw: true, plain_status: 'refused', simple: [false, false], simple_rw: true });
  });

  it('raw socket: option answers per the spec, and BLOCK_STATUS only with the context of the export entered', async () => {
    const name = (n: string) => Buffer.from(n, 'utf8');
    // --- option haggling ---
    const s = await greet(rig.server.port);
    // SET before structured replies: NBD_REP_ERR_INVALID (spec: SHOULD). LIST selects
    // nothing and is answered anyway (spec: MAY refuse; qemu-nbd and nbdkit answer it).
    s.write(option(10, metaData('vol', ['base:allocation'])));
    expect((await s.optionReply()).type).toBe(REP_ERR_INVALID);
    s.write(option(9, metaData('vol', [])));
    let r = await s.optionReply();
    expect([r.option, r.type, r.data.readUInt32BE(0), r.data.subarray(4).toString()]).toEqual([9, REP_META_CONTEXT, 0, 'base:allocation']);
    expect((await s.optionReply()).type).toBe(REP_ACK);
    s.write(option(8)); // STRUCTURED_REPLY
    expect((await s.optionReply()).type).toBe(REP_ACK);
    // LIST "base:" -> base:allocation with id 0, then ACK.
    s.write(option(9, metaData('vol', ['base:'])));
    r = await s.optionReply();
    expect([r.option, r.type, r.data.readUInt32BE(0), r.data.subarray(4).toString()]).toEqual([9, REP_META_CONTEXT, 0, 'base:allocation']);
    expect((await s.optionReply()).type).toBe(REP_ACK);
    // SET "base:" selects nothing (spec: ignored there); an unknown context neither.
    s.write(option(10, metaData('vol', ['base:', 'base:other', 'x-foo:bar'])));
    expect((await s.optionReply()).type).toBe(REP_ACK);
    // Malformed data (a query running past the end, trailing bytes): NBD_REP_ERR_INVALID.
    const bad = metaData('vol', ['base:allocation']);
    bad.writeUInt32BE(100, 4 + 3 + 4);
    s.write(option(10, bad));
    expect((await s.optionReply()).type).toBe(REP_ERR_INVALID);
    s.write(option(9, Buffer.concat([metaData('vol', []), Buffer.from([0])])));
    expect((await s.optionReply()).type).toBe(REP_ERR_INVALID);
    s.write(option(10, Buffer.from([0, 0, 0])));
    expect((await s.optionReply()).type).toBe(REP_ERR_INVALID);
    // An export we do not serve.
    s.write(option(10, metaData('nope', ['base:allocation'])));
    expect((await s.optionReply()).type).toBe(REP_ERR_UNKNOWN);
    // SET base:allocation (twice in the query: one context) -> its id, then ACK.
    s.write(option(10, metaData('vol', ['base:allocation', 'base:allocation'])));
    r = await s.optionReply();
    expect([r.type, r.data.subarray(4).toString()]).toEqual([REP_META_CONTEXT, 'base:allocation']);
    const id = r.data.readUInt32BE(0);
    expect((await s.optionReply()).type).toBe(REP_ACK);
    // GO vol; the transmission flags are the same as without a context.
    s.write(option(7, Buffer.concat([u32(3), name('vol'), Buffer.from([0, 0])])));
    r = await s.optionReply();
    expect(r.type).toBe(REP_INFO);
    expect(r.data.readUInt16BE(10)).toBe(0x1 | 0x4 | 0x8 | 0x20 | 0x40 | 0x100);
    expect((await s.optionReply()).type).toBe(REP_ACK);

    // --- transmission ---
    s.write(requestHeader(7, 1n, 4096n, 8192));
    expect(await s.chunk()).toEqual({ flags: 1, type: 5, handle: 1n, payload: [id, 8192, 0] });
    s.write(requestHeader(7, 2n, BigInt(SIZE - 100), 100, 8)); // REQ_ONE
    expect(await s.chunk()).toEqual({ flags: 1, type: 5, handle: 2n, payload: [id, 100, 0] });
    for (const [handle, offset, length, flags] of [
      [3n, BigInt(SIZE - 100), 101, 0], // past the end
      [4n, 0n, 0, 0], // zero length
      [5n, 0n, 512, 0x80], // unknown flag
      [6n, 2n ** 63n, 512, 0], // absurd offset
      [7n, 0n, 0xffffffff, 0], // the largest length, longer than the export
    ] as const) {
      s.write(requestHeader(7, handle, offset, length, flags));
      expect(await s.chunk()).toMatchObject({ flags: 1, type: 0x8001, handle, errno: 22 });
    }
    s.write(requestHeader(7, 8n, 0n, SIZE));
    expect(await s.chunk()).toEqual({ flags: 1, type: 5, handle: 8n, payload: [id, SIZE, 0] });
    s.destroy();

    // Contexts selected for another export do not carry over to the one entered.
    const t = await greet(rig.server.port);
    t.write(option(8));
    await t.optionReply();
    t.write(option(10, metaData('ro', ['base:allocation'])));
    expect((await t.optionReply()).type).toBe(REP_META_CONTEXT);
    expect((await t.optionReply()).type).toBe(REP_ACK);
    t.write(option(7, Buffer.concat([u32(3), name('vol'), Buffer.from([0, 0])])));
    expect((await t.optionReply()).type).toBe(REP_INFO);
    expect((await t.optionReply()).type).toBe(REP_ACK);
    t.write(requestHeader(7, 9n, 0n, 512));
    expect(await t.chunk()).toMatchObject({ type: 0x8001, handle: 9n, errno: 22 });
    t.destroy();

    // A simple-reply client (EXPORT_NAME, no options) gets a simple EINVAL reply.
    const u = await greet(rig.server.port);
    u.write(option(1, name('vol')));
    await u.bytes(10); // size + transmission flags (NO_ZEROES)
    u.write(requestHeader(7, 11n, 0n, 512));
    const reply = await u.bytes(16);
    expect([reply.readUInt32BE(0), reply.readUInt32BE(4), reply.readBigUInt64BE(8)]).toEqual([0x67446698, 22, 11n]);
    // and the connection goes on
    u.write(requestHeader(0, 12n, 0n, 4));
    const read = await u.bytes(20);
    expect([read.readUInt32BE(4), read.readBigUInt64BE(8), [...read.subarray(16)]]).toEqual([0, 12n, [7, 38, 69, 100]]);
    u.destroy();
  });
});

// --- raw-socket helpers ---

const REP_ACK = 1;
const REP_INFO = 3;
const REP_META_CONTEXT = 4;
const REP_ERR_INVALID = 0x80000003;
const REP_ERR_UNKNOWN = 0x80000006;

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/** Data of LIST/SET_META_CONTEXT: export name, query count, queries. */
function metaData(exportName: string, queries: string[]): Buffer {
  const name = Buffer.from(exportName, 'utf8');
  return Buffer.concat([u32(name.length), name, u32(queries.length), ...queries.flatMap((q) => [u32(Buffer.byteLength(q)), Buffer.from(q, 'utf8')])]);
}

interface RawClient extends Socket {
  bytes(n: number): Promise<Buffer>;
  optionReply(): Promise<{ option: number; type: number; data: Buffer }>;
  /** One structured reply chunk: BLOCK_STATUS payload as u32s, or an error chunk's errno. */
  chunk(): Promise<{ flags: number; type: number; handle: bigint; payload?: number[]; errno?: number }>;
}

/** Connects, reads the greeting and sends the client flags (FIXED_NEWSTYLE | NO_ZEROES). */
async function greet(port: number): Promise<RawClient> {
  const s = connect(port, '127.0.0.1') as unknown as RawClient;
  s.bytes = byteReader(s).take;
  s.optionReply = async () => {
    const head = await s.bytes(20);
    expect(head.readBigUInt64BE(0)).toBe(0x3e889045565a9n);
    const length = head.readUInt32BE(16);
    return { option: head.readUInt32BE(8), type: head.readUInt32BE(12), data: length ? await s.bytes(length) : Buffer.alloc(0) };
  };
  s.chunk = async () => {
    const head = await s.bytes(20);
    expect(head.readUInt32BE(0)).toBe(0x668e33ef);
    const type = head.readUInt16BE(6);
    const data = await s.bytes(head.readUInt32BE(16));
    const base = { flags: head.readUInt16BE(4), type, handle: head.readBigUInt64BE(8) };
    if (type & 0x8000) return { ...base, errno: data.readUInt32BE(0) };
    return { ...base, payload: Array.from({ length: data.length / 4 }, (_, i) => data.readUInt32BE(4 * i)) };
  };
  const greeting = await s.bytes(18);
  expect(greeting.subarray(0, 8).toString()).toBe('NBDMAGIC');
  s.write(Buffer.from([0, 0, 0, 3]));
  return s;
}

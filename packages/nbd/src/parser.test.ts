import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { HeadstartError } from '@headstart/errors';
import { IHAVEOPT, NBD_CMD_DISC, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_WRITE, NBD_OPT_GO, NBD_OPT_LIST, REQUEST_MAGIC } from './constants';
import { NbdParser, type NbdRequest } from './parser';

type Event = [string, ...unknown[]];

/** A sink that logs every event and, like the connection, starts transmission on GO. */
function recordingParser(limits?: { maxRequest?: number; maxOptionData?: number }) {
  const events: Event[] = [];
  const requests: NbdRequest[] = [];
  const parser: NbdParser = new NbdParser(
    {
      clientFlags: (f) => events.push(['flags', f]),
      option: (o, data) => {
        events.push(['option', o, data.toString('hex')]);
        if (o === NBD_OPT_GO) parser.startTransmission();
      },
      optionTooBig: (o, len) => events.push(['tooBig', o, len]),
      request: (r: NbdRequest) => {
        requests.push(r);
        events.push(['request', r.type, r.flags, r.handleHi, r.handleLo, r.offset, r.length, r.data?.toString('hex') ?? null]);
      },
      protocolError: (e: HeadstartError) => events.push(['error', e.code]),
    },
    limits,
  );
  return { parser, events, requests };
}

function option(code: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(IHAVEOPT, 0);
  h.writeUInt32BE(code, 8);
  h.writeUInt32BE(data.length, 12);
  return Buffer.concat([h, data]);
}

function goData(name: string): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(4 + n.length + 2);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  return b;
}

function request(type: number, handle: bigint, offset: bigint, length: number, flags = 0, payload?: Buffer): Buffer {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(REQUEST_MAGIC, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  h.writeBigUInt64BE(handle, 8);
  h.writeBigUInt64BE(offset, 16);
  h.writeUInt32BE(length, 24);
  return payload ? Buffer.concat([h, payload]) : h;
}

const payload = Buffer.from('0123456789abcdef'.repeat(3));
const session = Buffer.concat([
  Buffer.from([0, 0, 0, 3]),
  option(NBD_OPT_LIST),
  option(NBD_OPT_GO, goData('vol')),
  request(NBD_CMD_WRITE, 0xdeadbeef00000001n, 4096n, payload.length, 1, payload),
  request(NBD_CMD_READ, 0xffffffffffffffffn, 0x123456789n, 512),
  request(NBD_CMD_WRITE, 7n, 0n, 0),
  request(NBD_CMD_FLUSH, 8n, 0n, 0),
  request(NBD_CMD_DISC, 9n, 0n, 0),
]);

function feed(chunks: Buffer[]) {
  const { parser, events } = recordingParser();
  for (const c of chunks) parser.push(c);
  return events;
}

describe('NbdParser', () => {
  const whole = feed([session]);

  it('decodes a whole session: flags, options, then requests with payloads and 64-bit fields', () => {
    expect(whole).toEqual([
      ['flags', 3],
      ['option', NBD_OPT_LIST, ''],
      ['option', NBD_OPT_GO, goData('vol').toString('hex')],
      ['request', NBD_CMD_WRITE, 1, 0xdeadbeef, 1, 4096, payload.length, payload.toString('hex')],
      ['request', NBD_CMD_READ, 0, 0xffffffff, 0xffffffff, 0x123456789, 512, null],
      ['request', NBD_CMD_WRITE, 0, 0, 7, 0, 0, ''],
      ['request', NBD_CMD_FLUSH, 0, 0, 8, 0, 0, null],
      ['request', NBD_CMD_DISC, 0, 0, 9, 0, 0, null],
    ]);
  });

  it('gives the same events however the input is split in two', () => {
    for (let cut = 1; cut < session.length; cut++) {
      expect(feed([session.subarray(0, cut), session.subarray(cut)]), `cut at ${cut}`).toEqual(whole);
    }
  });

  it('gives the same events fed one byte at a time, and under random chunkings', () => {
    const bytes: Buffer[] = [];
    for (let i = 0; i < session.length; i++) bytes.push(session.subarray(i, i + 1));
    expect(feed(bytes)).toEqual(whole);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: session.length }), { maxLength: 20 }), (cuts) => {
        const sorted = [...new Set(cuts)].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let at = 0;
        for (const c of sorted) {
          chunks.push(session.subarray(at, c));
          at = c;
        }
        chunks.push(session.subarray(at));
        expect(feed(chunks)).toEqual(whole);
      }),
    );
  });

  it('hands a payload that arrived whole as a view of the chunk (no copy)', () => {
    let seen: Buffer | null = null;
    const p = new NbdParser({ clientFlags() {}, option() {}, optionTooBig() {}, protocolError() {}, request: (r) => (seen = r.data) });
    p.startTransmission();
    const chunk = request(NBD_CMD_WRITE, 1n, 0n, payload.length, 0, payload);
    p.push(chunk);
    expect(seen!.buffer).toBe(chunk.buffer);
  });

  it('copies payloads out of a transient (reused) receive buffer, split or whole', () => {
    for (let cut = 1; cut < session.length; cut += 7) {
      const { parser, events, requests: seen } = recordingParser();
      // One reused buffer, refilled for each piece like a socket's receive buffer.
      const recv = Buffer.alloc(session.length);
      for (const piece of [session.subarray(0, cut), session.subarray(cut)]) {
        piece.copy(recv);
        parser.push(recv.subarray(0, piece.length), true);
        recv.fill(0xee);
      }
      expect(events).toEqual(whole);
      expect(seen[0].data!.toString('hex')).toBe(payload.toString('hex')); // survived the refill
      expect(seen[0].ownsData).toBe(true);
    }
  });

  it('lets the socket read a large payload straight into its buffer (payloadTarget)', () => {
    const { parser, requests } = recordingParser();
    parser.startTransmission();
    const big = Buffer.alloc(300_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    const input = request(NBD_CMD_WRITE, 42n, 8192n, big.length, 0, big);
    expect(parser.payloadTarget(1)).toBeNull(); // no payload under way yet
    parser.push(input.subarray(0, 28 + 1000), true); // header and the first bytes
    let at = 28 + 1000;
    while (at < input.length) {
      const target = parser.payloadTarget(1)!;
      const n = Math.min(target.length, 65_536);
      input.copy(target, 0, at, at + n); // what the kernel would do
      parser.payloadReceived(n);
      at += n;
    }
    expect(requests).toHaveLength(1);
    expect(requests[0].data!.equals(big)).toBe(true);
    expect(parser.payloadTarget(1)).toBeNull();
    parser.push(request(NBD_CMD_FLUSH, 43n, 0n, 0), true); // and parsing goes on
    expect(requests[1].type).toBe(NBD_CMD_FLUSH);
  });

  it('rejects a bad option magic and ignores everything after', () => {
    const { parser, events } = recordingParser();
    const bad = option(NBD_OPT_LIST);
    bad[0] ^= 0xff;
    parser.push(Buffer.concat([Buffer.from([0, 0, 0, 1]), bad, option(NBD_OPT_LIST)]));
    expect(events).toEqual([['flags', 1], ['error', 'NBD_BAD_HANDSHAKE']]);
    expect(parser.stopped).toBe(true);
  });

  it('rejects a bad request magic', () => {
    const { parser, events } = recordingParser();
    parser.startTransmission();
    const bad = request(NBD_CMD_READ, 1n, 0n, 512);
    bad.writeUInt32BE(0x12345678, 0);
    parser.push(bad);
    expect(events).toEqual([['error', 'NBD_BAD_REQUEST']]);
  });

  it('refuses an oversized WRITE from its header, before buffering any payload', () => {
    const { parser, events } = recordingParser({ maxRequest: 1024 });
    parser.startTransmission();
    parser.push(request(NBD_CMD_WRITE, 1n, 0n, 1025)); // header only; payload never sent
    expect(events).toEqual([['error', 'NBD_REQUEST_TOO_LARGE']]);
  });

  it('skips an oversized option unread and goes on with the next one', () => {
    const { parser, events } = recordingParser({ maxOptionData: 8 });
    const big = option(99, Buffer.alloc(100, 1));
    const input = Buffer.concat([Buffer.from([0, 0, 0, 1]), big, option(NBD_OPT_LIST)]);
    for (let i = 0; i < input.length; i += 7) parser.push(input.subarray(i, i + 7));
    expect(events).toEqual([['flags', 1], ['tooBig', 99, 100], ['option', NBD_OPT_LIST, '']]);
  });

  it('never throws on garbage, in any phase, under any chunking', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.boolean(), fc.integer({ min: 1, max: 64 }), (bytes, transmission, step) => {
        const { parser, events } = recordingParser({ maxRequest: 4096, maxOptionData: 256 });
        if (transmission) parser.startTransmission();
        const buf = Buffer.from(bytes);
        for (let i = 0; i < buf.length; i += step) parser.push(buf.subarray(i, i + step));
        // After an error nothing else is reported.
        const err = events.findIndex((e) => e[0] === 'error');
        if (err >= 0) expect(err).toBe(events.length - 1);
      }),
      { numRuns: 500 },
    );
  });
});

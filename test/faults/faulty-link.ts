/**
 * A TCP proxy between a source and its replica that a fault campaign can break: cut every
 * connection, flip one byte of what the source sends next, or stop forwarding for a while.
 */
import { randomInt } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';

export class FaultyLink {
  private readonly live = new Set<{ client: Socket; upstream: Socket }>();
  private corruptPending = false;
  private stalledUntil = 0;
  /** Bytes forwarded from the source to the replica. */
  forwarded = 0;
  /** Bytes flipped so far. */
  corrupted = 0;

  private constructor(private readonly server: Server, readonly port: number, private upstreamPort: number) {}

  static async start(upstreamPort: number): Promise<FaultyLink> {
    let link!: FaultyLink;
    const server = createServer((client) => link.accept(client));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    link = new FaultyLink(server, (server.address() as { port: number }).port, upstreamPort);
    return link;
  }

  private accept(client: Socket): void {
    const upstream = connect(this.upstreamPort, '127.0.0.1');
    const pair = { client, upstream };
    this.live.add(pair);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      this.live.delete(pair);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.on('data', (chunk: Buffer) => {
      this.forwarded += chunk.length;
      if (this.corruptPending && chunk.length >= 16) {
        this.corruptPending = false;
        const copy = Buffer.from(chunk);
        copy[randomInt(copy.length)] ^= 1 << randomInt(8);
        this.corrupted++;
        chunk = copy;
      }
      this.forward(upstream, client, chunk);
    });
    upstream.on('data', (chunk: Buffer) => this.forward(client, upstream, chunk));
  }

  /** Writes with back-pressure, holding everything back while stalled. */
  private forward(to: Socket, from: Socket, chunk: Buffer): void {
    const wait = this.stalledUntil - Date.now();
    if (wait > 0) {
      from.pause();
      setTimeout(() => {
        from.resume();
        this.forward(to, from, chunk);
      }, wait);
      return;
    }
    if (!to.write(chunk)) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  }

  /** Every connection through the proxy is destroyed (a network drop). */
  cut(): number {
    const n = this.live.size;
    for (const { client, upstream } of this.live) {
      client.destroy();
      upstream.destroy();
    }
    this.live.clear();
    return n;
  }

  /** The next chunk the source sends has one bit flipped. */
  corruptNext(): void {
    this.corruptPending = true;
  }

  /** Nothing is forwarded either way for `ms` (a link that hangs). */
  stall(ms: number): void {
    this.stalledUntil = Date.now() + ms;
  }

  /** The replica moved (restarted on another port). */
  retarget(port: number): void {
    this.upstreamPort = port;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

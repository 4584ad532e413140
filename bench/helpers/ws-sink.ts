/**
 * Reference receiver for bench/link: a bare WebSocket server on loopback that only counts
 * the bytes of the binary messages it receives, and prints one JSON line when it has
 * `expect` bytes (its own CPU time included). It measures what the transport alone costs
 * on this machine, the floor under any replication protocol built on WebSockets in Node.
 * Args: one JSON object {expect}. Prints {"event":"listening","url"}, then {"event":"done","cpuUs"}.
 */
import { WebSocketServer } from 'ws';

const { expect } = JSON.parse(process.argv[2] ?? '{}') as { expect: number };
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 64 << 20 });
wss.on('listening', () => {
  const { port } = wss.address() as { port: number };
  process.stdout.write(`${JSON.stringify({ event: 'listening', url: `ws://127.0.0.1:${port}` })}\n`);
});
wss.on('connection', (ws) => {
  let got = 0;
  const cpu0 = process.cpuUsage();
  ws.on('message', (data: Buffer) => {
    got += data.length;
    if (got >= expect) {
      const cpu = process.cpuUsage(cpu0);
      process.stdout.write(`${JSON.stringify({ event: 'done', cpuUs: cpu.user + cpu.system })}\n`);
    }
  });
});
process.on('SIGTERM', () => wss.close(() => process.exit(0)));

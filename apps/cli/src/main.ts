/**
 * The `headstart` command line. One file per group of commands would come once they grow;
 * for now each command is a small function over @headstart/node. Every reporting command
 * takes --json (one JSON object on stdout); exit codes are stable (see EXIT below).
 */
import { Command, CommanderError, Option } from 'commander';
import { HeadstartError, isHeadstartError } from '@headstart/errors';
import type { DemoResult, LinkCapView, NodeConfig, NodeStatus } from '@headstart/node';
import type { TraceFormat } from '@headstart/traces';
import { archiveCommands } from './archive';

// The AWS SDK (under the archive's S3 store) warns on every start about Node versions it
// will drop; the warning says nothing an operator can act on here. Set before it loads.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** The node package (LMDB, WebSockets, the planner...) loads only for commands that need it, so --help stays instant. */
const nodeLib = () => import('@headstart/node');
const setup = () => import('./setup');

async function admin(configPath: string, method: 'GET' | 'POST', path: string): Promise<unknown> {
  const { loadConfig, callAdmin } = await nodeLib();
  const config: NodeConfig = await loadConfig(configPath);
  return callAdmin(config, method, path);
}

/** Exit codes, stable for scripts. */
export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3, notEqual: 4 } as const;

const EXIT_HELP = `
Exit codes: 0 success; 1 the operation failed (the message has a code and a hint);
2 bad usage or configuration; 3 the node is not running or not reachable;
4 a check found the replica different from its source, or the archive damaged.`;

export async function main(argv: string[]): Promise<number> {
  const program = new Command('headstart')
    .description('Asynchronous block-volume replication that predicts when to pre-send each snapshot point.')
    .version('0.1.0')
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(s) })
    .addHelpText('after', EXIT_HELP);

  const configOption = () => new Option('-c, --config <file>', 'node configuration file').default('headstart.yaml');
  let code: number = EXIT.ok;

  program
    .command('demo')
    .description('Run a source and a replica node on loopback with one volume, a workload through NBD, predictive snapshot shipping and the dashboard')
    .option('--for <duration>', 'stop after this long (e.g. 30s, 5m), check the replica, print figures')
    .option('--json', 'print one JSON object with the figures (with --for)')
    .option('--interval <duration>', 'snapshot interval (default 60s; shorter for short --for runs)')
    .option('--rate <rate>', 'mean workload write rate', '1MiB/s')
    .option('--link <rate>', 'replication link rate limit', '4MiB/s')
    .option('--size <size>', 'volume size', '256MiB')
    .option('--trace <file>', 'replay a block trace (any supported format, plain or compressed) instead of the built-in workload')
    .option('--speedup <factor>', 'replay the trace this many times faster than recorded', '60')
    .option('--disk <id>', 'the disk of a multi-disk trace to replay (MSR DiskNumber, SPC ASU, ...; default: the first)')
    .option('--format <name>', 'read the trace as this format instead of detecting it (vscsi, msr, spc, fiu, blkparse, alibaba, headstart)')
    .option('--lenient', 'skip the trace\'s malformed records (counted) instead of stopping at the first')
    .option('--no-dashboard', 'do not serve the dashboard')
    .action(async (o: DemoFlags) => {
      code = await demo(o);
    });

  program
    .command('serve')
    .description('Run this site\'s node in the foreground (volumes, NBD, replication, dashboard, metrics)')
    .addOption(configOption())
    .action(async (o: { config: string }) => {
      code = await serve(o.config);
    });

  program
    .command('status')
    .description('Per volume and sink: role, epoch, last committed point, lag, RPO age, link state, D, B, next close, whether the planner resumed its saved model; flags NOT CONVERGING, CLOSE FAILING, DISK NEARLY FULL / DISK FULL, GROUP WAIT')
    .addOption(configOption())
    .option('--json', 'print JSON')
    .action(async (o: { config: string; json?: boolean }) => {
      const status = (await admin(o.config, 'GET', '/v1/status')) as NodeStatus;
      const { formatStatus } = await import('./format');
      print(o.json, status, () => formatStatus(status));
    });

  program
    .command('snapshot <volume>')
    .description('Take a snapshot point of a primary volume now')
    .addOption(configOption())
    .option('--wait', 'wait until every sink committed it (fails after 5 minutes in which no link made progress)')
    .option('--json', 'print JSON')
    .action(async (volume: string, o: { config: string; wait?: boolean; json?: boolean }) => {
      const p = (await admin(o.config, 'POST', `/v1/volumes/${encodeURIComponent(volume)}/snapshot`)) as { n: number };
      if (o.wait) await waitCommitted(o.config, volume, p.n, !o.json && process.stderr.isTTY === true);
      print(o.json, p, () => `point ${p.n} of ${volume} closed${o.wait ? ' and committed on every sink' : ''}`);
    });

  program
    .command('promote <volume>')
    .description('Make a replica the writable primary at its last committed point (raises its epoch); a consistency group is promoted as one')
    .addOption(configOption())
    .option('--force', 'promote even though the old primary still seems alive (its site is gone)')
    .option('--allow-torn', 'promote a consistency group even though its volumes hold different points')
    .option('--json', 'print JSON')
    .action(async (volume: string, o: { config: string; force?: boolean; allowTorn?: boolean; json?: boolean }) => {
      const query = [o.force ? 'force=1' : '', o.allowTorn ? 'allowTorn=1' : ''].filter(Boolean).join('&');
      const r = (await admin(o.config, 'POST', `/v1/volumes/${encodeURIComponent(volume)}/promote${query ? `?${query}` : ''}`)) as {
        epoch: number; point: number | null; tookMs: number; volumes?: { name: string; epoch: number; point: number | null }[];
      };
      const others = (r.volumes ?? []).filter((v) => v.name !== volume);
      const group = others.length === 0 ? '' : `, with ${others.map((v) => `${v.name} (point ${v.point}, epoch ${v.epoch})`).join(', ')} of its group`;
      print(o.json, r, () => `${volume} is primary at point ${r.point} with epoch ${r.epoch}${group} (promotion took ${r.tookMs.toFixed(0)} ms)`);
    });

  program
    .command('rate <rate>')
    .description('Change a link cap at run time: a peer\'s (--peer, shared by all its links) or the node-wide linkCap; "none" removes it; it holds over the cap\'s windows until "auto" hands the cap back to its configuration')
    .addOption(configOption())
    .option('--peer <name>', 'the peer whose cap changes (default: the node-wide cap)')
    .option('--json', 'print JSON')
    .action(async (rate: string, o: { config: string; peer?: string; json?: boolean }) => {
      const { parseRate } = await nodeLib();
      const parsed = rate === 'none' || rate === 'auto' ? null : parseRate(rate);
      // Refused here, in the operator's words, not as the admin API's "rate=NaN".
      if (parsed !== null && !(Number.isFinite(parsed) && parsed > 0)) throw new HeadstartError('CONFIG_INVALID', `not a rate: ${JSON.stringify(rate)} (write e.g. 20MB/s, 100Mbit/s, a number of bytes per second, none or auto)`);
      const bytes = parsed === null ? rate : String(parsed);
      const query = `rate=${bytes}${o.peer === undefined ? '' : `&peer=${encodeURIComponent(o.peer)}`}`;
      const r = (await admin(o.config, 'POST', `/v1/rate?${query}`)) as { peer: string | null; rateLimit: number | null; links: number; cap: LinkCapView };
      const what = r.peer === null ? 'the node-wide link cap' : `the cap of peer ${r.peer}`;
      const { formatCap } = await import('./format');
      print(o.json, r, () => `${what} is ${formatCap(r.cap)}, shared by ${r.links} link${r.links === 1 ? '' : 's'}`);
    });

  program
    .command('demote <volume>')
    .description('Make a primary a replica of its peer again (failback: only differing blocks come back); a consistency group is demoted as one')
    .addOption(configOption())
    .option('--json', 'print JSON')
    .action(async (volume: string, o: { config: string; json?: boolean }) => {
      const r = (await admin(o.config, 'POST', `/v1/volumes/${encodeURIComponent(volume)}/demote`)) as { epoch: number; volumes?: { name: string; epoch: number; point?: number | null }[] };
      const vs = r.volumes ?? [{ name: volume, epoch: r.epoch }];
      // A group's volumes each have their own epoch (one added later counts from 1): each is said.
      // The point each image holds (an older node does not say): what a promotion back would keep.
      const at = (v: (typeof vs)[number]) => (v.point == null ? '' : `, at its point ${v.point}`);
      const each = vs.length > 1 ? `${vs.map((v) => `${v.name} (epoch ${v.epoch}${at(v)})`).join(', ')} are replicas` : `${vs[0].name} is a replica (epoch ${vs[0].epoch}${at(vs[0])})`;
      print(o.json, r, () => `${each}; the primary will resynchronise ${vs.length > 1 ? 'them' : 'it'} by checksum`);
    });

  program
    .command('verify <volume>')
    .description('Compare a replica with its source at a fresh point, by range checksums; report differing ranges')
    .addOption(configOption())
    .option('--replica <url>', "the replica's read-only NBD export, nbd://host:port/name")
    .option('--sink <peer>', "wait for this sink only (the compared replica's site); default: every sink of the volume")
    .option('--end', "end a verification under way (or left by a killed verify): the source's schedule resumes")
    .option('--json', 'print JSON')
    .action(async (volume: string, o: { config: string; replica?: string; sink?: string; end?: boolean; json?: boolean }) => {
      if (o.end === true) {
        const r = await admin(o.config, 'POST', `/v1/volumes/${encodeURIComponent(volume)}/verify-end`);
        print(o.json, r, () => `${volume}: no verification holds its schedule now`);
        return;
      }
      if (o.replica === undefined) throw new HeadstartError('CONFIG_INVALID', "verify needs --replica nbd://host:port/name (the replica's read-only export), or --end");
      const { verify } = await import('./verify');
      const r = await verify(o.config, volume, o.replica, { sink: o.sink, say: !o.json, showProgress: !o.json && process.stderr.isTTY === true });
      print(o.json, r, () =>
        r.equal
          ? `${volume}: the replica equals point ${r.point} of its source (${r.ranges_compared} ranges compared in ${r.seconds.toFixed(1)} s)`
          : `${volume}: the replica DIFFERS from point ${r.point} in ${r.differing.length} range(s):\n` + r.differing.map((d) => `  bytes ${d.offset}..${d.offset + d.length - 1}`).join('\n'),
      );
      if (!r.equal) code = EXIT.notEqual;
    });

  program
    .command('export <volume>')
    .description('Write a point to a raw image file: a fresh point of a primary, or the committed point of a replica (its replication pauses while it copies)')
    .addOption(configOption())
    .requiredOption('-o, --out <path>', 'the raw image to write (sparse); with --group, the directory to write VOLUME.raw into')
    .option('--group', "every volume of the volume's consistency group, at one point of the group")
    .option('--force', 'replace the file(s) if they exist')
    .option('--json', 'print JSON')
    .action(async (volume: string, o: { config: string; out: string; group?: boolean; force?: boolean; json?: boolean }) => {
      const { resolve } = await import('node:path');
      const out = resolve(o.out);
      const path = `/v1/volumes/${encodeURIComponent(volume)}/export?out=${encodeURIComponent(out)}${o.force ? '&force=1' : ''}${o.group ? '&group=1' : ''}`;
      type Image = { volume?: string; n: number; scheduledAt?: number; bytes: number; path: string };
      // A group's members number their points apart: the scheduled time says two images are one point of the group.
      const at = (r: Image) => (r.scheduledAt === undefined ? '' : ` (of ${new Date(r.scheduledAt).toISOString()})`);
      if (o.group) {
        const r = (await admin(o.config, 'POST', path)) as { group: string; scheduledAt: number; volumes: Image[] };
        print(o.json, r, () => [`group ${r.group} at its point of ${new Date(r.scheduledAt).toISOString()}:`, ...r.volumes.map((v) => `  point ${v.n} of ${v.volume} written to ${v.path} (${v.bytes} bytes, sparse)`)].join('\n'));
        return;
      }
      const r = (await admin(o.config, 'POST', path)) as Image;
      print(o.json, r, () => `point ${r.n}${at(r)} of ${volume} written to ${r.path} (${r.bytes} bytes, sparse)`);
    });

  const init = program.command('init').description('Create a node configuration, or add a volume to one');
  init
    .command('node <name>')
    .description('Write a new node configuration (and a data directory) for this site')
    .addOption(configOption())
    .option('--data <dir>', 'data directory (default: data, beside the configuration file)')
    .option('--nbd <addr>', 'NBD listen address', '127.0.0.1:10809')
    .option('--peers <addr>', 'replication listen address', '127.0.0.1:7800')
    .option('--dashboard <addr>', 'dashboard listen address', '127.0.0.1:7900')
    .option('--metrics <addr>', 'metrics listen address', '127.0.0.1:9400')
    .option('--admin <addr>', 'admin API listen address (loopback)', '127.0.0.1:7901')
    .option('--no-tls', 'replicate over plain ws:// (default: a self-signed certificate, pinned by pairing)')
    .action(async (name: string, o: { config: string; data?: string; nbd: string; peers: string; dashboard: string; metrics: string; admin: string; tls: boolean }) => {
      await (await setup()).initNode(o.config, { name, ...o });
      process.stdout.write(`wrote ${o.config}; next: headstart init volume NAME --size 10GiB, then headstart pair\n`);
    });
  init
    .command('volume <name>')
    .description('Add a volume to the configuration (created on the next serve)')
    .addOption(configOption())
    .requiredOption('--size <size>', 'volume size, e.g. 10GiB')
    .option('--block-size <bytes>', 'block size', '4096')
    .option('--role <role>', 'primary or replica', 'primary')
    .option('--every <duration>', 'snapshot interval', '5m')
    .option('--sink <peer...>', 'peers to ship to while primary')
    .option('--group <name>', 'consistency group: its volumes close, commit, fail over and fail back as one (same schedule and sinks)')
    .option('--level', 'load leveling: the node picks where in the interval the points fall, so volumes sharing a link take turns')
    .option('--rpo-target <duration>', 'recovery-point target (more than the interval), e.g. 15m: status, the dashboard and the metrics flag a sink older than it')
    .action(async (name: string, o: { config: string; size: string; blockSize: string; role: string; every: string; sink?: string[]; group?: string; level?: boolean; rpoTarget?: string }) => {
      await (await setup()).addVolume(o.config, { name, size: o.size, blockSize: Number(o.blockSize), role: o.role, every: o.every, sinks: o.sink ?? [], group: o.group, level: o.level, rpoTarget: o.rpoTarget });
      process.stdout.write(`added volume ${name} to ${o.config}\n`);
    });

  const pair = program.command('pair').description('Pair two sites: one prints a token, the other accepts it');
  pair
    .command('token')
    .description('Print this site\'s pairing token (contains the shared secret: pass it privately)')
    .addOption(configOption())
    .option('--url <url>', 'the address peers reach this node at (ws://host:port)')
    .action(async (o: { config: string; url?: string }) => {
      process.stdout.write((await (await setup()).pairToken(o.config, o.url)) + '\n');
    });
  pair
    .command('accept <token>')
    .description('Accept a peer\'s token: stores the shared secret and the peer; prints the token to accept on the other site')
    .addOption(configOption())
    .option('--url <url>', 'the address the peer reaches this node at (ws://host:port)')
    .action(async (token: string, o: { config: string; url?: string }) => {
      const r = await (await setup()).pairAccept(o.config, token, o.url);
      process.stdout.write(
        (r.reply === null
          ? `paired with ${r.peer}\n`
          : r.sameSecret
          ? `paired with ${r.peer}; if ${r.peer} does not list ${r.self} as a peer yet, run on ${r.peer}:\n  headstart pair accept ${r.reply}\n`
          : `paired with ${r.peer}; now run on ${r.peer}:\n  headstart pair accept ${r.reply}\n`) +
          // A helper re-paired two running sites and waited for links that could not come up.
          `a running node reads its peers when it starts: restart \`headstart serve\` on each site that is running\n`,
      );
    });

  archiveCommands(program.command('archive'), (c) => (code = c), EXIT).addHelpText('after', EXIT_HELP);

  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (isHeadstartError(err)) {
      process.stderr.write(`headstart: ${err.describe()}\n`);
      if (err.code === 'CONFIG_INVALID' || err.code === 'ARCHIVE_CONFIG' || err.code === 'LINK_TLS_CONFIG') return EXIT.usage;
      if (err.code === 'NODE_UNREACHABLE') return EXIT.unreachable;
      return EXIT.failed;
    }
    process.stderr.write(`headstart: ${(err as Error)?.stack ?? String(err)}\n`);
    return EXIT.failed;
  }
}

/** How long `snapshot --wait` waits on links that make no progress (a backlog that moves is waited out). */
const WAIT_NO_PROGRESS_MS = 5 * 60_000;

/**
 * Waits until every sink of `volume` committed point n (an initial sync or a failback can
 * take long): on a terminal, a live line per sink with the bytes sent so far and the rate.
 */
async function waitCommitted(configPath: string, volume: string, n: number, live: boolean): Promise<void> {
  const started = Date.now();
  let seen = '';
  let progressAt = started;
  for (;;) {
    const status = (await admin(configPath, 'GET', '/v1/status')) as NodeStatus;
    const v = status.volumes.find((x) => x.name === volume);
    const sinks = v?.sinks ?? [];
    if (sinks.every((s) => s.acked !== null && s.acked >= n)) {
      if (live) process.stderr.write('\r\x1b[K');
      return;
    }
    const mark = sinks.map((s) => `${s.acked}/${s.payloadBytesSent}`).join(' ');
    if (mark !== seen) {
      seen = mark;
      progressAt = Date.now();
    } else if (Date.now() - progressAt > WAIT_NO_PROGRESS_MS) {
      if (live) process.stderr.write('\n');
      const behind = sinks.filter((s) => s.acked === null || s.acked < n).map((s) => `${s.name} (acknowledged ${s.acked ?? 'none'}, link ${s.state}${s.lastError ? `: ${s.lastError}` : ''})`);
      throw new HeadstartError('LINK_TIMEOUT', `point ${n} of ${volume} is closed, but no link made progress towards it for ${WAIT_NO_PROGRESS_MS / 60_000} minutes: ${behind.join('; ')}`);
    }
    if (live) {
      const parts = sinks.map((s) => `${s.name}: ${s.acked !== null && s.acked >= n ? 'committed' : `${(s.payloadBytesSent / 2 ** 20).toFixed(1)} MiB sent, ${(s.throughput / 1e6).toFixed(2)} MB/s, link ${s.state}`}`);
      process.stderr.write(`\r\x1b[Kwaiting for point ${n} (${Math.round((Date.now() - started) / 1000)} s): ${parts.join('; ')}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

function print(json: boolean | undefined, value: unknown, human: () => string): void {
  process.stdout.write(json ? JSON.stringify(value) + '\n' : human() + '\n');
}

async function serve(configPath: string): Promise<number> {
  // Listen for the stop signal before anything starts: a SIGTERM while the node is still
  // starting (its admin API may already answer) must stop it cleanly once it is up, not
  // kill it with volumes open.
  let requestStop!: () => void;
  const stopRequested = new Promise<void>((resolve) => (requestStop = resolve));
  process.once('SIGINT', requestStop);
  process.once('SIGTERM', requestStop);
  const { loadConfig, createLogger, startNode, startServices } = await nodeLib();
  const config = await loadConfig(configPath);
  const log = createLogger({ name: config.node.name });
  const node = await startNode(config, log);
  let services: Awaited<ReturnType<typeof startServices>>;
  try {
    services = await startServices(node, config, log);
  } catch (err) {
    // Half a node (exports and links up, no admin API to stop it) must not stay behind.
    await node.stop().catch((e: unknown) => log.error({ err: e }, 'stopping the node after its services failed'));
    throw err;
  }
  log.info({ nbd: node.nbdPort, peers: node.peersPort, dashboard: services.dashboardUrl, metrics: services.metricsUrl, admin: services.adminPort }, 'node running');
  if (services.dashboardUrl) process.stderr.write(`dashboard: ${services.dashboardUrl}\n`);
  await stopRequested;
  log.info('stopping');
  await services.stop();
  await node.stop();
  return EXIT.ok;
}

interface DemoFlags { for?: string; json?: boolean; interval?: string; rate: string; link: string; size: string; trace?: string; speedup: string; disk?: string; format?: string; lenient?: boolean; dashboard: boolean }

async function demo(o: DemoFlags): Promise<number> {
  const { parseDuration, parseRate, parseSize } = await nodeLib();
  // Each flag checked here, by its name: a bad one used to surface as a key of the demo's
  // generated configuration ("volumes[0].schedule.every: not a duration"), or not at all.
  const positive = (flag: string, value: string, parse: (v: string) => number, like: string) => {
    const v = parse(value);
    if (!(Number.isFinite(v) && v > 0)) throw new HeadstartError('CONFIG_INVALID', `${flag} takes ${like}, not ${JSON.stringify(value)}`);
    return v;
  };
  const duration = (flag: string, value: string) => positive(flag, value, parseDuration, 'a duration like 30s, 5m or 1h');
  const forMs = o.for === undefined ? undefined : duration('--for', o.for);
  const intervalMs = o.interval === undefined ? undefined : duration('--interval', o.interval);
  const writeRate = positive('--rate', o.rate, parseRate, 'a rate like 1MiB/s or 100Mbit/s');
  const linkRate = positive('--link', o.link, parseRate, 'a rate like 4MiB/s or 100Mbit/s');
  const volumeSize = positive('--size', o.size, parseSize, 'a size like 256MiB or 2GiB');
  const speedup = positive('--speedup', o.speedup, Number, 'a factor like 60');
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const { createLogger, silentLogger, runDemo } = await nodeLib();
  const quiet = o.json === true;
  const tty = process.stderr.isTTY === true;
  const logger = quiet || tty ? silentLogger() : createLogger({ level: 'warn' });
  let trace: { writes: AsyncIterable<{ time: number; offset: number; length: number }>; speedup: number } | undefined;
  if (o.trace !== undefined) {
    const { readTraceWrites } = await import('./trace');
    const { TRACE_FORMATS } = await import('@headstart/traces'); // loaded only for a trace: it doubles the CLI's start
    if (o.format !== undefined && !(TRACE_FORMATS as readonly string[]).includes(o.format)) throw new HeadstartError('CONFIG_INVALID', `--format takes one of ${TRACE_FORMATS.join(', ')}, not ${JSON.stringify(o.format)}`);
    trace = { writes: readTraceWrites(o.trace, { disk: o.disk, format: o.format as TraceFormat | undefined, lenient: o.lenient === true, volumeSize, onNote: (note) => process.stderr.write(`${tty ? '\r\x1b[K' : ''}headstart demo: ${note}\n`) }), speedup };
  }
  let result: DemoResult;
  try {
    result = await runDemo({
      forMs,
      intervalMs,
      writeRate,
      linkRate,
      volumeSize,
      trace,
      dashboard: o.dashboard,
      signal: abort.signal,
      logger,
      onReady: (info) => {
        if (quiet) return;
        process.stderr.write(
          [
            `headstart demo: site-a (source) -> site-b (replica), one ${o.size} volume, a point every ${info.intervalMs / 1000}s, predictive policy`,
            `  NBD export:  ${info.nbd}`,
            `  dashboard:   ${info.dashboard ?? '(off)'}`,
            `  metrics:     ${info.metrics ?? '(off)'}`,
            `  data:        ${info.dir} (removed at exit)`,
            forMs === undefined ? '  Ctrl-C stops everything.' : `  running for ${o.for}...`,
            '',
          ].join('\n'),
        );
      },
      onStatus: (line) => {
        if (quiet) return;
        if (tty) process.stderr.write(`\r\x1b[K${line}`);
        else process.stderr.write(line + '\n');
      },
    });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  if (tty && !quiet) process.stderr.write('\n');
  if (o.json) process.stdout.write(JSON.stringify(result) + '\n');
  else {
    process.stdout.write(
      [
        `snapshot points committed on the replica: ${result.snapshots_committed}`,
        `completion lag: mean ${fmt(result.lag_mean_s)} s, max ${fmt(result.lag_max_s)} s`,
        `redundancy (bytes sent / minimal bytes): ${fmt(result.redundancy)}`,
        result.replica_equal === null ? 'replica not compared (stopped by a signal)' : `replica equals point ${result.last_point} of the source: ${result.replica_equal ? 'yes' : 'NO'}`,
        '',
      ].join('\n'),
    );
  }
  return result.replica_equal === false ? EXIT.notEqual : EXIT.ok;
}

function fmt(x: number | null): string {
  return x === null ? '-' : x.toFixed(3);
}

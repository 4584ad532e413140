/**
 * Writing configuration: `init node`, `init volume`, `pair token|accept`. Edits go through
 * the YAML document model so an operator's comments and layout survive, and every result is
 * validated before it is written (a bad edit never reaches the file).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile, rename } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseDocument, stringify, type Document } from 'yaml';
import { HeadstartError } from '@headstart/errors';
import { validateConfig } from '@headstart/node';

async function loadDoc(path: string): Promise<Document> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new HeadstartError('CONFIG_INVALID', `cannot read ${path}: ${(err as Error).message} (create it with headstart init node NAME)`, { cause: err });
  }
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new HeadstartError('CONFIG_INVALID', `${path} is not valid YAML: ${doc.errors[0].message}`);
  return doc;
}

/** Validates, then writes atomically (temp file + rename). */
async function saveDoc(path: string, doc: Document): Promise<void> {
  validateConfig(doc.toJS(), path, dirname(resolve(path)));
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, doc.toString(), { mode: 0o600 });
  await rename(tmp, path);
}

export async function initNode(path: string, o: { name: string; data: string; nbd: string; peers: string; dashboard: string; metrics: string; admin: string }): Promise<void> {
  const exists = await readFile(path).then(
    () => true,
    () => false,
  );
  if (exists) throw new HeadstartError('CONFIG_INVALID', `${path} already exists; edit it or choose another --config`);
  const config = {
    node: { name: o.name, dataDir: o.data, secret: randomBytes(24).toString('hex') },
    listen: { nbd: o.nbd, peers: o.peers, dashboard: o.dashboard, metrics: o.metrics, admin: o.admin },
    peers: [],
    volumes: [],
  };
  validateConfig(config, path, dirname(resolve(path)));
  await mkdir(dirname(resolve(path)), { recursive: true });
  await writeFile(path, `# headstart node configuration (docs/configuration.md lists every key)\n${stringify(config)}`, { mode: 0o600, flag: 'wx' });
}

export async function addVolume(path: string, v: { name: string; size: string; blockSize: number; role: string; every: string; sinks: string[] }): Promise<void> {
  const doc = await loadDoc(path);
  const volume = { name: v.name, size: v.size, blockSize: v.blockSize, role: v.role, schedule: { every: v.every }, policy: { name: 'predictive' }, sinks: v.sinks };
  if (!doc.has('volumes')) doc.set('volumes', doc.createNode([]));
  (doc.get('volumes') as { add(x: unknown): void }).add(doc.createNode(volume));
  await saveDoc(path, doc);
}

interface PairPayload {
  v: 1;
  node: string;
  url: string;
  secret: string;
}

function encodeToken(p: PairPayload): string {
  return 'hs1.' + Buffer.from(JSON.stringify(p)).toString('base64url');
}

function decodeToken(token: string): PairPayload {
  const bad = () => new HeadstartError('CONFIG_INVALID', 'not a headstart pairing token (it starts with "hs1.")');
  if (!token.startsWith('hs1.')) throw bad();
  let p: unknown;
  try {
    p = JSON.parse(Buffer.from(token.slice(4), 'base64url').toString('utf8'));
  } catch {
    throw bad();
  }
  const o = p as Partial<PairPayload>;
  if (o.v !== 1 || typeof o.node !== 'string' || typeof o.url !== 'string' || typeof o.secret !== 'string' || o.secret.length < 16) throw bad();
  return o as PairPayload;
}

function ownUrl(doc: Document, given?: string): string {
  if (given) return given;
  const peers = doc.getIn(['listen', 'peers']) as string | undefined;
  if (!peers) throw new HeadstartError('CONFIG_INVALID', 'listen.peers is not set: give --url ws://host:port (the address peers reach this node at)');
  return `ws://${peers}`;
}

export async function pairToken(path: string, url?: string): Promise<string> {
  const doc = await loadDoc(path);
  let secret = doc.getIn(['node', 'secret']) as string | undefined;
  if (!secret) {
    secret = randomBytes(24).toString('hex');
    doc.setIn(['node', 'secret'], secret);
    await saveDoc(path, doc);
  }
  return encodeToken({ v: 1, node: String(doc.getIn(['node', 'name'])), url: ownUrl(doc, url), secret });
}

/** Stores the peer and the shared secret; returns the token the other site must accept, or null if it already knows us. */
export async function pairAccept(path: string, token: string, url?: string): Promise<string | null> {
  const p = decodeToken(token);
  const doc = await loadDoc(path);
  const mine = doc.getIn(['node', 'secret']) as string | undefined;
  const hadSame = mine === p.secret;
  doc.setIn(['node', 'secret'], p.secret);
  if (!doc.has('peers')) doc.set('peers', doc.createNode([]));
  const peers = doc.get('peers') as { items: { get(k: string): unknown; set(k: string, v: unknown): void }[]; add(x: unknown): void };
  const existing = peers.items.find((i) => i.get('name') === p.node);
  if (existing) existing.set('url', p.url);
  else peers.add(doc.createNode({ name: p.node, url: p.url }));
  await saveDoc(path, doc);
  return hadSame ? null : encodeToken({ v: 1, node: String(doc.getIn(['node', 'name'])), url: ownUrl(doc, url), secret: p.secret });
}

import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FeedEvent } from '@headstart/protocol';
import { EventJournal, JOURNAL_EVENTS, eventJournalPath } from './event-journal';
import { silentLogger } from './logger';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hs-journal-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const lost = (time: number): FeedEvent => ({ type: 'link-disconnected', time, volume: 'db', sink: 'site-b', code: 'LINK_CLOSED', message: 'the peer closed the link' });

/** A logger that keeps its warnings. */
function warnings(): { log: ReturnType<typeof silentLogger>; seen: string[] } {
  const seen: string[] = [];
  const log = silentLogger();
  log.warn = ((_o: unknown, msg?: string) => void seen.push(msg ?? '')) as typeof log.warn;
  return { log, seen };
}

describe('the dashboard event journal', () => {
  it('keeps the newest events across a restart, bounded, without status nudges or snapshot records', async () => {
    const path = eventJournalPath(dir);
    const first = await EventJournal.open(path, silentLogger());
    expect(first.events()).toEqual([]);
    for (let t = 1; t <= JOURNAL_EVENTS + 5; t++) first.add(lost(t));
    first.add({ type: 'status', time: 999, volumes: [] });
    await first.close();
    const again = await EventJournal.open(path, silentLogger());
    const times = again.events().map((e) => e.time);
    expect(times.length).toBe(JOURNAL_EVENTS);
    expect(times[0]).toBe(6);
    expect(times.at(-1)).toBe(JOURNAL_EVENTS + 5);
    expect(again.events().every((e) => e.type === 'link-disconnected')).toBe(true);
  });

  it('saves on its own a moment after an event (a kill -9 loses at most that moment)', async () => {
    const path = eventJournalPath(dir);
    const j = await EventJournal.open(path, silentLogger());
    j.add(lost(1));
    await expect.poll(async () => JSON.parse(await readFile(path, 'utf8').catch(() => '[]')).length, { timeout: 5000 }).toBe(1);
    await j.close();
  });

  it('starts empty, with a warning, from a damaged file; drops entries that are not events', async () => {
    const path = eventJournalPath(dir);
    await writeFile(path, '{"not": "a list"');
    const w = warnings();
    expect((await EventJournal.open(path, w.log)).events()).toEqual([]);
    expect(w.seen).toEqual(["the dashboard's saved event list cannot be read: it starts empty"]);
    // Kept aside for whoever wants to read it, not overwritten by the next save.
    const aside = (await readdir(dir)).filter((f) => f.startsWith('dashboard-events.json.damaged-'));
    expect(aside.length).toBe(1);
    expect(await readFile(join(dir, aside[0]), 'utf8')).toBe('{"not": "a list"');
    await writeFile(path, JSON.stringify([lost(1), { type: 'link-connected' }, 7, null, { type: 'snapshot', time: 2 }, lost(3)]));
    expect((await EventJournal.open(path, silentLogger())).events().map((e) => e.time)).toEqual([1, 3]);
    // Parseable but damaged: a time no date holds (the page's whole list stopped at "Invalid
    // time value"), a kind it does not know, fields missing or of another type (shown as
    // "undefined → undefined: link lost (undefined: undefined)"): each is dropped, the rest kept.
    const started: FeedEvent = { type: 'node-started', time: 5, node: 'site-a' };
    const promoted: FeedEvent = { type: 'promoted', time: 6, volume: 'db', epoch: 2, n: null };
    await writeFile(
      path,
      JSON.stringify([
        lost(1),
        { ...lost(2), time: 1e300 },
        { ...lost(2), time: 1796679000000e4 },
        { type: 'link-disconnected', time: 2 },
        { type: 'snapshot-acked', time: 2, volume: 'db' },
        { type: 'unknown-kind', time: 2 },
        { type: 'promoted', time: 2, volume: 7, epoch: 2, n: 1 },
        { type: 'error', time: 2 },
        lost(3),
        started,
        promoted,
      ]),
    );
    expect((await EventJournal.open(path, silentLogger())).events()).toEqual([lost(1), lost(3), started, promoted]);
  });

  it('says when it cannot save, and saves at the next chance', async () => {
    const path = join(dir, 'no-such-dir', 'x', 'events.json');
    const w = warnings();
    const j = await EventJournal.open(path, w.log);
    await writeFile(join(dir, 'no-such-dir'), 'a file where a directory should be');
    j.add(lost(1));
    await j.close();
    expect(w.seen).toEqual(["the dashboard's event list could not be saved; tried again at the next event"]);
    await rm(join(dir, 'no-such-dir'));
    j.add(lost(2));
    await j.close();
    expect(JSON.parse(await readFile(path, 'utf8')).map((e: FeedEvent) => e.time)).toEqual([1, 2]);
  });
});

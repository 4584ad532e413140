/**
 * The dashboard's event list across restarts: <dataDir>/dashboard-events.json keeps the
 * newest JOURNAL_EVENTS feed events (links lost and back, promotions, demotions, errors,
 * commits), so a page opened after a crash and restart shows what led up to it instead of
 * an empty list. Saved whole (temp file, synced, renamed) at most every SAVE_EVERY_MS after
 * a change and at stop, so a kill -9 loses at most that much of it. Only a convenience: a
 * missing, unreadable or damaged file means an empty list and a warning, never a failed
 * start, and a failed save (a full disk) is logged and tried again at the next change.
 */
import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { FeedEvent } from '@headstart/protocol';
import type { Logger } from './logger';
import { saveLearnt as saveWhole } from './planner-state';

/** As many as the dashboard server remembers for a page (its HISTORY_EVENTS). */
export const JOURNAL_EVENTS = 200;
const SAVE_EVERY_MS = 2_000;

export function eventJournalPath(dataDir: string): string {
  return join(dataDir, 'dashboard-events.json');
}

/** The latest time a Date holds (ms): a time past it cannot be shown (the page's list stopped at "Invalid time value"). */
const MAX_DATE_MS = 8.64e15;
const str = 'string';
const num = 'number';
/** The fields each kind of event the journal keeps must have, and their types ('null' allows null too). */
const FIELDS: Record<string, Record<string, readonly string[]>> = {
  'snapshot-closed': { volume: [str], n: [num] },
  'snapshot-acked': { volume: [str], sink: [str], n: [num], lagMs: [num], sentBytes: [num], minimalBytes: [num] },
  'snapshot-committed': { volume: [str], n: [num] },
  'link-error': { volume: [str], sink: [str], code: [str], message: [str] },
  'presend-stopped': { volume: [str], sink: [str], n: [num], limit: [num] },
  'presend-limited': { volume: [str], n: [num], limit: [num] },
  'link-connected': { volume: [str], sink: [str] },
  'link-disconnected': { volume: [str], sink: [str], code: [str], message: [str] },
  promoted: { volume: [str], epoch: [num], n: [num, 'null'] },
  demoted: { volume: [str], epoch: [num] },
  error: { volume: [str, 'null'], code: [str], message: [str] },
  'node-started': { node: [str] },
};

/**
 * Whether a saved entry is an event the page can show: a kind it keeps, a time a date can
 * hold, and that kind's fields. A damaged entry is dropped, not shown as garbage
 * ("undefined → undefined: link lost") nor left to stop the page's list.
 */
function isSavedEvent(e: unknown): e is FeedEvent {
  if (typeof e !== 'object' || e === null) return false;
  const o = e as Record<string, unknown>;
  if (typeof o.type !== 'string' || typeof o.time !== 'number' || !Number.isFinite(o.time) || Math.abs(o.time) > MAX_DATE_MS) return false;
  const fields = Object.hasOwn(FIELDS, o.type) ? FIELDS[o.type] : undefined;
  if (fields === undefined) return false;
  return Object.entries(fields).every(([k, types]) => types.includes(o[k] === null ? 'null' : typeof o[k]) && (typeof o[k] !== 'number' || Number.isFinite(o[k])));
}

export class EventJournal {
  private timer: NodeJS.Timeout | null = null;
  private saving: Promise<void> = Promise.resolve();
  private dirty = false;

  private constructor(
    private readonly path: string,
    private readonly list: FeedEvent[],
    private readonly log: Logger,
  ) {}

  static async open(path: string, log: Logger): Promise<EventJournal> {
    let list: FeedEvent[] = [];
    try {
      const parsed: unknown = JSON.parse(await readFile(path, 'utf8'));
      if (!Array.isArray(parsed)) throw new Error('not a list of events');
      // Only what looks like an event: a damaged entry is dropped, not shown as garbage.
      list = parsed.filter(isSavedEvent).slice(-JOURNAL_EVENTS);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        // Kept aside, not overwritten by the next save: what it held may matter after a crash.
        const aside = `${path}.damaged-${Date.now()}`;
        const kept = await rename(path, aside).then(() => aside, () => null);
        log.warn({ err, path, keptAs: kept }, 'the dashboard\'s saved event list cannot be read: it starts empty');
      }
    }
    return new EventJournal(path, list, log);
  }

  /** The saved events, oldest first. */
  events(): FeedEvent[] {
    return [...this.list];
  }

  add(e: FeedEvent): void {
    // A status nudge carries nothing to show; snapshot records are rebuilt from the node's points.
    if (e.type === 'status' || e.type === 'snapshot') return;
    this.list.push(e);
    if (this.list.length > JOURNAL_EVENTS) this.list.splice(0, this.list.length - JOURNAL_EVENTS);
    this.dirty = true;
    this.timer ??= setTimeout(() => {
      this.timer = null;
      void this.save();
    }, SAVE_EVERY_MS);
  }

  private save(): Promise<void> {
    this.saving = this.saving.then(async () => {
      if (!this.dirty) return;
      this.dirty = false;
      try {
        await saveWhole(this.path, Buffer.from(JSON.stringify(this.list)));
      } catch (err) {
        this.dirty = true;
        this.log.warn({ err, path: this.path }, 'the dashboard\'s event list could not be saved; tried again at the next event');
      }
    });
    return this.saving;
  }

  /** Saves what is not saved yet. */
  async close(): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await this.save();
  }
}

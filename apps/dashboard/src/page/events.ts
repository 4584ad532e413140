/** The event list, newest first, bounded; each event in words with the viewer's clock time. */
import type { FeedEvent } from '@headstart/protocol';
import { formatBytes, formatClock, formatDuration } from '../format';
import { MAX_EVENTS, type Model } from './model';

export function describe(e: FeedEvent, name: (id: string) => string): { text: string; tone: '' | 'bad' | 'good' } {
  switch (e.type) {
    case 'snapshot-closed':
      return { text: `${name(e.volume)}: closed snapshot #${e.n}`, tone: '' };
    case 'snapshot-acked':
      return { text: `${name(e.volume)} → ${e.sink}: committed #${e.n}, lag ${formatDuration(e.lagMs)}${e.commitMs != null ? ` (its commit ${formatDuration(e.commitMs)})` : ''}, sent ${formatBytes(e.sentBytes)} of ${formatBytes(e.minimalBytes)} minimal`, tone: 'good' };
    case 'snapshot-committed':
      return { text: `${name(e.volume)}: replica committed #${e.n}`, tone: 'good' };
    case 'link-error':
      return { text: `${name(e.volume)} → ${e.sink}: link error ${e.code}: ${e.message}`, tone: 'bad' };
    case 'presend-stopped':
      return { text: `${name(e.volume)} → ${e.sink}: open point #${e.n} has more than ${e.limit.toLocaleString('en')} dirty blocks; not pre-sent, it ships whole at its close (its lag grows)`, tone: 'bad' };
    case 'presend-limited':
      return { text: `${name(e.volume)}: open point #${e.n} has more than ${e.limit.toLocaleString('en')} dirty blocks; the planner pre-sends from the first ${e.limit.toLocaleString('en')}, the rest ship at its close (its lag grows)`, tone: 'bad' };
    case 'link-connected':
      return { text: `${name(e.volume)} → ${e.sink}: link connected`, tone: 'good' };
    case 'link-disconnected':
      return { text: `${name(e.volume)} → ${e.sink}: link lost (${e.code}: ${e.message})`, tone: 'bad' };
    case 'promoted':
      return { text: `${name(e.volume)}: promoted to primary, epoch ${e.epoch}${e.n !== null ? `, at point #${e.n}` : ''}`, tone: '' };
    case 'demoted':
      return { text: `${name(e.volume)}: demoted to replica, epoch ${e.epoch} (its primary resynchronises it by checksum)`, tone: '' };
    case 'error':
      return { text: `${e.volume !== null ? `${name(e.volume)}: ` : ''}${e.code}: ${e.message}`, tone: 'bad' };
    case 'node-started':
      return { text: `node ${e.node} started (the events below are from before it)`, tone: '' };
    default:
      return { text: e.type, tone: '' };
  }
}

function clock(time: number): HTMLTimeElement {
  const t = document.createElement('time');
  t.dateTime = new Date(time).toISOString();
  t.textContent = formatClock(time);
  return t;
}

/** A link that keeps failing the same way (a retry every few seconds, for hours when fenced): one line, counted. */
interface Repeat {
  readonly li: HTMLLIElement;
  readonly what: string;
  readonly first: number;
  count: number;
}

export class EventList {
  private dropped = 0;
  /** Per volume x sink, the line of its newest link loss, while nothing else happened on that link. */
  private readonly repeats = new Map<string, Repeat>();
  constructor(private readonly ol: HTMLOListElement) {}

  reset(): void {
    this.ol.replaceChildren();
    this.repeats.clear();
  }

  render(model: Model): void {
    const fresh = model.newEvents;
    if (fresh.length === 0 && model.droppedEvents === this.dropped) return;
    model.newEvents = [];
    const name = (id: string) => model.volumes.get(id)?.name ?? id;
    const frag = document.createDocumentFragment();
    // Oldest first, each prepended: the list reads newest first.
    for (const e of fresh) {
      const { text, tone } = describe(e, name);
      const link = 'sink' in e ? `${e.volume}\u0000${e.sink}` : null;
      const r = link === null ? undefined : this.repeats.get(link);
      if (e.type === 'link-disconnected' && r !== undefined && r.what === text) {
        // The same loss again: the line moves up with the newest time and says how often.
        r.count++;
        r.li.replaceChildren(clock(e.time), `${text} · ${r.count} times since ${formatClock(r.first)}`);
        frag.prepend(r.li);
        continue;
      }
      const li = document.createElement('li');
      li.dataset.type = e.type;
      if (tone) li.className = tone;
      li.append(clock(e.time), text);
      frag.prepend(li);
      if (link === null) continue;
      if (e.type === 'link-disconnected') this.repeats.set(link, { li, what: text, first: e.time, count: 1 });
      else this.repeats.delete(link);
    }
    if (model.droppedEvents !== this.dropped) {
      const li = document.createElement('li');
      li.className = 'bad';
      li.textContent = `${model.droppedEvents - this.dropped} events skipped (this page read the feed too slowly)`;
      frag.prepend(li);
      this.dropped = model.droppedEvents;
    }
    this.ol.prepend(frag);
    while (this.ol.childElementCount > MAX_EVENTS) this.ol.lastElementChild!.remove();
  }
}

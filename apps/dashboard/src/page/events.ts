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
    case 'error':
      return { text: `${e.volume !== null ? `${name(e.volume)}: ` : ''}${e.code}: ${e.message}`, tone: 'bad' };
    default:
      return { text: e.type, tone: '' };
  }
}

export class EventList {
  private dropped = 0;
  constructor(private readonly ol: HTMLOListElement) {}

  reset(): void {
    this.ol.replaceChildren();
  }

  render(model: Model): void {
    const fresh = model.newEvents;
    if (fresh.length === 0 && model.droppedEvents === this.dropped) return;
    model.newEvents = [];
    const name = (id: string) => model.volumes.get(id)?.name ?? id;
    const frag = document.createDocumentFragment();
    for (let i = fresh.length - 1; i >= 0; i--) {
      const e = fresh[i];
      const { text, tone } = describe(e, name);
      const li = document.createElement('li');
      li.dataset.type = e.type;
      if (tone) li.className = tone;
      const t = document.createElement('time');
      t.dateTime = new Date(e.time).toISOString();
      t.textContent = formatClock(e.time);
      li.append(t, text);
      frag.append(li);
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

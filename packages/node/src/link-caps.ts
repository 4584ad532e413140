/**
 * One link cap of a node — a peer's (`peers[].rateLimit`, shared by every link to it) or the
 * node-wide `linkCap` — with its windows (rate-windows.ts): it sets its token bucket to what
 * the clock says and re-arms itself for the next window boundary. An operator's
 * `headstart rate` overrides the windows until `headstart rate auto` (or a restart): a cap
 * changed by hand in an incident must not be lifted by a timer behind the operator's back.
 */
import { sharedRateLimit, type TokenBucket } from '@headstart/replication';
import { capAt, type CapNow, type RateWindow } from './rate-windows';

/** What status shows of a cap. */
export interface LinkCapView {
  /** The peer whose cap this is, or null: the node-wide linkCap. */
  readonly peer: string | null;
  /** Bytes/s now; null = no cap. */
  readonly rateLimit: number | null;
  /** Who set it: the plain configured cap, one of its windows, or an operator at run time. */
  readonly setBy: 'config' | 'window' | 'operator';
  /** The window in force ("mon-fri 08:00-18:00"), if any. */
  readonly window: string | null;
  /** When the windows may change it next (epoch ms); null: never, or an operator holds it. */
  readonly until: number | null;
  /** How many windows the cap has. */
  readonly windows: number;
}

/** Re-read the windows at least this often, so a clock step or a DST change is caught. */
const MAX_TIMER_MS = 3_600_000;

export class LinkCap {
  readonly bucket: TokenBucket;
  private operator = false;
  private current: CapNow;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    readonly peer: string | null,
    private readonly plain: number | null,
    private readonly windows: readonly RateWindow[],
    /** Called when a window boundary changes the cap (not for the operator's own changes). */
    private readonly onWindowChange: (view: LinkCapView) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.current = capAt(windows, plain, now());
    this.bucket = sharedRateLimit(this.current.rate);
    this.arm();
  }

  view(): LinkCapView {
    const c = this.current;
    return {
      peer: this.peer,
      rateLimit: this.bucket.limit,
      setBy: this.operator ? 'operator' : c.window !== null ? 'window' : 'config',
      window: this.operator ? null : (c.window?.label ?? null),
      until: this.operator || c.until === Infinity ? null : c.until,
      windows: this.windows.length,
    };
  }

  /** `headstart rate`: holds until `resume`. */
  setByOperator(bytesPerSecond: number | null): void {
    this.operator = true;
    this.bucket.setRate(bytesPerSecond);
  }

  /** `headstart rate auto`: back to the configured cap and its windows, now. */
  resume(): void {
    this.operator = false;
    this.apply(false);
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private apply(notify: boolean): void {
    const before = this.bucket.limit;
    const beforeWindow = this.current.window;
    this.current = capAt(this.windows, this.plain, this.now());
    if (!this.operator) {
      this.bucket.setRate(this.current.rate);
      if (notify && (before !== this.current.rate || beforeWindow !== this.current.window)) this.onWindowChange(this.view());
    }
    this.arm();
  }

  private arm(): void {
    this.stop();
    if (this.windows.length === 0) return;
    // A few ms past the boundary, so the window that starts there is the one found.
    const wait = Math.min(MAX_TIMER_MS, Math.max(0, this.current.until - this.now()) + 5);
    this.timer = setTimeout(() => this.apply(true), wait);
    this.timer.unref();
  }
}

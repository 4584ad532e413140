/**
 * Consistency groups on the replica: the volumes of a group (a database's data and its log,
 * say) commit each snapshot point together, so that after a crash, a failed commit or a
 * promotion they all hold the same point: the one their source cut in a single instant (the
 * source node closes a group's volumes in one synchronous step). Across the group a point is
 * known by its scheduled time T; point numbers are each volume's own.
 *
 * A member's commit of its point T (replica-target.ts) passes two barriers:
 *   1. closed — every other member has accepted CLOSE for T too (or is past it). This only
 *      keeps a member from writing its journal, which holds back its staging, long before
 *      the others have their blocks;
 *   2. prepared — after writing its own redo journal (durable, with every staged block), it
 *      waits until every other member's journal for T is durable too. Only then does it
 *      write its image. The decision "T commits" is therefore "every member journaled T",
 *      and it can be read back from the members' durable state after any crash.
 * A member whose journal's decision does not hold (after a restart, or when it is detached
 * for a promotion) drops that journal: no member can have written T into its image then, so
 * every member stays at the point before T, and the source sends CLOSE(T) again.
 *
 * A member satisfies a barrier for T also when it can never hold T:
 *   - it committed T or a later point;
 *   - it skipped T: it has a later point queued (or journaled) and not T — its source did not
 *     cut T (a close that failed on that volume alone, or a kill -9 between two members'
 *     close records), so waiting would stall the group for ever; the group then is not
 *     consistent at T, and a promotion before the next common point is refused
 *     (NODE_GROUP_TORN, node.ts);
 *   - it has committed nothing yet: a member in its first full copy is not yet part of the
 *     group's consistent state, and waiting for it could take hours. Likewise a member's own
 *     first point waits for nobody.
 */
import { HeadstartError } from '@headstart/errors';
import type { Volume } from '@headstart/volume';

/** What the group reads of one member: its volume, and (while it is in service) its commit state. */
export interface GroupMember {
  readonly volume: Volume;
  /** Scheduled time of the point whose durable journal the member holds, or null. */
  readonly preparedAt: number | null;
  /** Scheduled times of the points whose CLOSE was accepted and whose commit has not ended. */
  readonly pendingAt: ReadonlySet<number>;
}

/** A member's commit held by its group: what an operator sees in status. */
export interface GroupWait {
  readonly group: string;
  /** Scheduled time of the point waiting, and since when (epoch ms). */
  readonly scheduledAt: number;
  readonly since: number;
  /** 'closed': the others have not received the point yet; 'prepared': their journals are not durable yet. */
  readonly phase: 'closed' | 'prepared';
  /** The members it waits for. */
  readonly waitingFor: readonly string[];
}

interface Waiter {
  readonly owner: GroupMember;
  readonly T: number;
  readonly phase: 'closed' | 'prepared';
  readonly since: number;
  readonly ready: () => boolean;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

export class CommitGroup {
  private readonly members = new Map<string, GroupMember>();
  private waiters: Waiter[] = [];

  constructor(readonly name: string) {}

  /** Adds (or replaces, at attach) the member of volume `id`. */
  join(id: string, member: GroupMember): void {
    this.members.set(id, member);
    this.changed();
  }

  /**
   * A member goes out of service (detach, close): its own waits fail with REPL_STOPPED. It
   * stays a member: the others go on reading its state (its queued points cleared by the
   * caller, its journal until recovered, its volume's committed point) until it joins again.
   */
  leave(id: string): void {
    const m = this.members.get(id);
    if (m === undefined) return;
    const err = new HeadstartError('REPL_STOPPED', `volume ${id} was taken out of service while its commit waited for its group ${this.name}`);
    for (const w of this.waiters.filter((x) => x.owner === m)) w.reject(err);
    this.waiters = this.waiters.filter((x) => x.owner !== m);
    this.changed();
  }

  /** Re-evaluates the waits: call after any member's state changed. */
  changed(): void {
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.ready()) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  /** Barrier 1: resolves when every other member has accepted CLOSE for T, or is past it. */
  closed(self: GroupMember, T: number): Promise<void> {
    return this.wait(self, T, 'closed', () => this.first(self) || this.others(self).every((o) => this.hasClosed(o, T)));
  }

  /** Barrier 2: resolves when T is decided: every other member journaled T, or is past it. */
  prepared(self: GroupMember, T: number): Promise<void> {
    return this.wait(self, T, 'prepared', () => this.decided(self, T));
  }

  /** Whether `self`'s journal for T may be redone: every other member journaled T or is past it (durable state only). */
  decided(self: GroupMember, T: number): boolean {
    return this.first(self) || this.others(self).every((o) => this.hasPrepared(o, T));
  }

  /**
   * A member's first point (its first full copy) waits for nobody: members are made at
   * different times, so their first points have different times, and the group's consistent
   * state starts at the first point they all close together.
   */
  private first(self: GroupMember): boolean {
    return self.volume.committed === null;
  }

  private others(self: GroupMember): GroupMember[] {
    return [...this.members.values()].filter((m) => m !== self);
  }

  /** What member `id`'s commit waits for, or null. */
  waiting(id: string): GroupWait | null {
    const self = this.members.get(id);
    const w = this.waiters.find((x) => x.owner === self);
    if (self === undefined || w === undefined) return null;
    const blocking = (o: GroupMember) => (w.phase === 'closed' ? !this.hasClosed(o, w.T) : !this.hasPrepared(o, w.T));
    const waitingFor = [...this.members.entries()].filter(([, o]) => o !== self && blocking(o)).map(([name]) => name);
    return { group: this.name, scheduledAt: w.T, since: w.since, phase: w.phase, waitingFor };
  }

  private wait(self: GroupMember, T: number, phase: 'closed' | 'prepared', ready: () => boolean): Promise<void> {
    if (ready()) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ owner: self, T, phase, since: Date.now(), ready, resolve, reject }));
  }

  /**
   * Committed T or later, or never committed anything: not yet part of the group's state (its
   * first full copy, queued or not, can take hours; the group does not wait for it).
   */
  private past(o: GroupMember, T: number): boolean {
    const c = o.volume.committed?.scheduledAt ?? null;
    return c === null || c >= T;
  }

  /** Has a later point queued or journaled, and not T: its source never cut T. */
  private skipped(o: GroupMember, T: number): boolean {
    if (o.pendingAt.has(T) || o.preparedAt === T) return false;
    if (o.preparedAt !== null && o.preparedAt > T) return true;
    for (const p of o.pendingAt) if (p > T) return true;
    return false;
  }

  private hasClosed(o: GroupMember, T: number): boolean {
    return this.past(o, T) || o.pendingAt.has(T) || o.preparedAt === T || this.skipped(o, T);
  }

  private hasPrepared(o: GroupMember, T: number): boolean {
    return this.past(o, T) || o.preparedAt === T || this.skipped(o, T);
  }
}

/**
 * Which processes a container's kernel trace events may be put down to.
 *
 * The kernel's filter (`set_event_pid`) holds pid numbers, not processes: a
 * number written just after its process exited stays in the list, and once
 * pids wrap (32768 on many hosts) the host process given that number is
 * traced with all it forks. An event counts only when its pid
 *
 * - was the container's at one of the last two polls,
 * - was forked, as the trace showed, by a process that counts, or
 * - is the container's now (its cgroup says so; a process that already
 *   exited cannot be asked).
 *
 * Numbers from older polls are let go, so a pid the container once used is
 * never matched to the host process that gets it after a wrap.
 *
 * When the kernel dropped events (its buffer overflowed), a fork may be
 * missing from the chain: for a while, a reader that is gone and unknown
 * still counts. An agent that floods the trace cannot hide a read that way.
 */
export const LOSS_GRACE_MS = 5_000;

/** Where a pid is now: the container's, another's (the host's), or gone. */
export type PidOwner = 'ours' | 'other' | 'gone';

export class TraceMembers {
  private polled = new Set<number>();
  private polledBefore = new Set<number>();
  private forked = new Set<number>();
  private forkedBefore = new Set<number>();
  private lostAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly ownerOf: (pid: number) => PidOwner,
    private readonly now: () => number = Date.now,
  ) {}

  /** A full poll's pids. */
  polledNow(pids: Iterable<number>): void {
    this.polledBefore = this.polled;
    this.polled = new Set(pids);
    this.forkedBefore = this.forked;
    this.forked = new Set();
  }

  /** A fork in the trace: the child counts when its parent does. */
  fork(parent: number, child: number): boolean {
    if (!this.counts(parent)) return false;
    this.forked.add(child);
    return true;
  }

  /** The trace said events were dropped. */
  lost(): void {
    this.lostAt = this.now();
  }

  /** Whether an event of this pid is the container's. */
  counts(pid: number): boolean {
    if (this.polled.has(pid) || this.forked.has(pid) || this.polledBefore.has(pid) || this.forkedBefore.has(pid)) return true;
    const owner = this.ownerOf(pid);
    if (owner === 'ours') {
      this.forked.add(pid);
      return true;
    }
    return owner === 'gone' && this.now() - this.lostAt < LOSS_GRACE_MS;
  }

  /** The container restarted: its pids are all new. */
  reset(): void {
    this.polled = new Set();
    this.polledBefore = new Set();
    this.forked = new Set();
    this.forkedBefore = new Set();
  }
}

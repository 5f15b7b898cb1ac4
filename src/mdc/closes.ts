import type { Clock, Timer } from '../common/clock.js'

/**
 * MDT closes, sent in batches. A release hands its open handle over and returns; the handle
 * leaves within `delayMs`, or as soon as `max` are waiting, with the others in one mdt_close.
 * Nothing an application does waits on a close (FUSE releases asynchronously), and the MDT
 * keeps the file open meanwhile as it would while the RPC travelled: an unlinked file goes a
 * few milliseconds later. On the metadata mix a close RPC per file cost the daemon and the MDS
 * about a sixth of a create's CPU. (common/batcher.ts's KeyedBatcher sends a lone item at once,
 * which would leave a program closing one file at a time with one RPC per close.)
 */
export class CloseBatcher {
  private pending: string[] = []
  private timer: Timer | null = null
  private readonly sending = new Set<Promise<void>>()

  constructor(
    /** Sends one batch; settles when it is answered, and handles its own failure. */
    private readonly send: (handles: string[]) => Promise<void>,
    private readonly clock: Clock,
    private readonly o: { max: number; delayMs: number },
  ) {}

  add(handle: string): void {
    this.pending.push(handle)
    if (this.pending.length >= this.o.max) this.sendPending()
    else this.timer ??= this.clock.setTimeout(() => this.sendPending(), this.o.delayMs)
  }

  /** Handles waiting to leave. */
  get waiting(): number {
    return this.pending.length
  }

  /** Sends what waits now; settles once every batch sent so far is answered. */
  flush(): Promise<void> {
    this.sendPending()
    return Promise.all(this.sending).then(() => undefined)
  }

  private sendPending(): void {
    this.timer?.cancel()
    this.timer = null
    if (!this.pending.length) return
    const p: Promise<void> = this.send(this.pending.splice(0)).finally(() => this.sending.delete(p))
    this.sending.add(p)
  }
}

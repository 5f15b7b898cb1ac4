import { LatencyFeed } from '../common/stats.js'
import type { OpName } from '../protocol/ops.js'

/**
 * An import's counters (what `get_param *.import` and /metrics show of a failover): state
 * transitions, resends, what replay sent, how long the import was not FULL, and the latency
 * of each kind of RPC. The import tells it what happened; it never decides anything.
 */
export interface BulkAverages {
  rpcs: number
  bytes: number
  ms: number
}

export class ImportStats {
  /** State changes since the import was set up, each state entered counted once per entry. */
  transitions = 0
  readonly entered = new Map<string, number>()
  /** Requests sent again after their connection was lost (Lustre's resend flag). */
  resends = 0
  replayedRequests = 0
  replayedBytes = 0
  /** Completed bulk RPCs, for the read/write data averages of `get_param osc.*.import`. */
  readonly bulk: { read: BulkAverages; write: BulkAverages } = { read: { rpcs: 0, bytes: 0, ms: 0 }, write: { rpcs: 0, bytes: 0, ms: 0 } }
  readonly latency = new LatencyFeed()
  private waitMs = 0
  private answered = 0
  private everFull = false
  /** Monotonic ms when the import last left FULL, null while FULL (or before it first was). */
  private stallStart: number | null = null
  private stalledMs = 0

  constructor(private readonly now: () => number) {}

  state(s: string): void {
    this.transitions += 1
    this.entered.set(s, (this.entered.get(s) ?? 0) + 1)
    const t = this.now()
    if (s === 'FULL' || s === 'CLOSED') {
      if (this.stallStart !== null) this.stalledMs += t - this.stallStart
      this.stallStart = null
      if (s === 'FULL') this.everFull = true
    } else if (this.everFull && this.stallStart === null) this.stallStart = t
  }

  resent(): void {
    this.resends += 1
  }

  replayed(bytes: number): void {
    this.replayedRequests += 1
    this.replayedBytes += bytes
  }

  /** An RPC answered after `ms`; `bulkBytes` for a successful read or write. */
  answer(op: OpName, ms: number, bulkBytes?: number): void {
    this.waitMs += ms
    this.answered += 1
    this.latency.tell(op, ms / 1000)
    if (bulkBytes === undefined || (op !== 'ost_read' && op !== 'ost_write')) return
    const s = this.bulk[op === 'ost_read' ? 'read' : 'write']
    s.rpcs += 1
    s.bytes += bulkBytes
    s.ms += ms
  }

  get avgWaitMs(): number {
    return this.answered ? this.waitMs / this.answered : 0
  }

  /** Time spent out of FULL since the import first was FULL, the current stall included. */
  get stallMs(): number {
    return this.stalledMs + (this.stallStart === null ? 0 : this.now() - this.stallStart)
  }
}

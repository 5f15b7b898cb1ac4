import { clusterFail, type FailMode, type MoveResult } from '../cluster/fail.js'
import { LocalCluster } from '../cluster/local.js'

/**
 * `--failover-at S`: S seconds into the run, a node of the embedded cluster fails and its
 * partner takes over (clusterFail), while the workload goes on. Times are relative to the
 * run's t0. The fault's time is the call of clusterFail, whose timeline counts from its own
 * start, one status probe of the nodes (milliseconds) later.
 */
export type BenchMode = 'hard' | 'soft' | 'hang'

/** hard: SIGKILL then takeover; soft: clean stop then takeover; hang: SIGSTOP, fenced after the dead time. */
export const FAIL_MODES: Record<BenchMode, FailMode> = { hard: 'kill', soft: 'soft', hang: 'hang' }

export interface FailoverSpec {
  atS: number
  what: string
  mode: BenchMode
  deadtimeMs: number
}

export interface FailoverRecord {
  what: string
  mode: BenchMode
  requested_ms: number
  /** When clusterFail was called; null if the run ended first. */
  fault_ms: number | null
  /** When the last of the moved targets served again on the partner. */
  served_ms: number | null
  move: MoveResult | null
  error: string | null
}

export class Failover {
  private timer: NodeJS.Timeout | null = null
  private pending: Promise<FailoverRecord> | null = null

  constructor(
    private readonly spec: FailoverSpec,
    private readonly clusterDir: string,
    private readonly say: (line: string) => void,
  ) {}

  arm(t0: number): void {
    this.timer = setTimeout(() => (this.pending = this.fire(t0)), this.spec.atS * 1000)
  }

  /** The record, once the takeover is over; a failover the run did not reach is cancelled. */
  async settle(): Promise<FailoverRecord> {
    if (this.timer) clearTimeout(this.timer)
    if (this.pending) return this.pending
    return { ...this.base(), fault_ms: null, served_ms: null, move: null, error: `not done: the run ended before ${this.spec.atS} s` }
  }

  private base(): Pick<FailoverRecord, 'what' | 'mode' | 'requested_ms'> {
    return { what: this.spec.what, mode: this.spec.mode, requested_ms: this.spec.atS * 1000 }
  }

  private async fire(t0: number): Promise<FailoverRecord> {
    const called = Date.now() - t0
    this.say(`+${(called / 1000).toFixed(2)} s: failing ${this.spec.what} (${this.spec.mode}), its partner takes over after ${this.spec.deadtimeMs / 1000} s`)
    try {
      const lc = await LocalCluster.open(this.clusterDir)
      const move = await clusterFail(lc, { what: this.spec.what, mode: FAIL_MODES[this.spec.mode], takeover: true, deadtimeMs: this.spec.deadtimeMs })
      const at = (ms: number) => called + ms
      for (const e of move.timeline) this.say(`+${(at(e.ms) / 1000).toFixed(2)} s: ${e.event}`)
      const served = move.moved.length ? at(Math.max(...move.moved.map((m) => m.ms))) : null
      return { ...this.base(), fault_ms: called, served_ms: served, move, error: null }
    } catch (e) {
      this.say(`failover of ${this.spec.what} failed: ${(e as Error).message}`)
      return { ...this.base(), fault_ms: called, served_ms: null, move: null, error: (e as Error).message }
    }
  }
}

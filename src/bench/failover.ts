import { clusterFail, type FailMode, type MoveResult } from '../cluster/fail.js'
import { logOf } from '../cluster/layout.js'
import { LocalCluster } from '../cluster/local.js'
import { healLink } from '../cluster/partition.js'
import { recoverySplit } from '../cluster/split.js'

/**
 * `--failover-at S`: S seconds into the run, a node of the embedded cluster fails and its
 * partner takes over (clusterFail), while the workload goes on. Times are relative to the
 * run's t0. The fault's time is that of the move's first event (the kill, the stop, the cut),
 * one status probe of the nodes after the call of clusterFail (and when the move fails, the call).
 */
export type BenchMode = 'hard' | 'soft' | 'hang' | 'partition'

/**
 * hard: SIGKILL then takeover; soft: clean stop then takeover; hang: SIGSTOP, fenced after the
 * dead time; partition (netns cluster): the node's link cut, fenced after the dead time.
 */
export const FAIL_MODES: Record<BenchMode, FailMode> = { hard: 'kill', soft: 'soft', hang: 'hang', partition: 'live' }

/**
 * Where the stall went, in ms of the run (null: not seen): the client noticed the loss
 * (detection), the node was powered off (fencing), the partner served (takeover), the
 * client's import was FULL again (client recovery).
 */
export interface StallSplit {
  target: string
  lost_ms: number | null
  fenced_ms: number | null
  served_ms: number
  restored_ms: number | null
}

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
  /** When the fault happened (when clusterFail was called, if it failed); null if the run ended first. */
  fault_ms: number | null
  /** When the last of the moved targets served again on the partner. */
  served_ms: number | null
  move: MoveResult | null
  error: string | null
  /** One per target moved, from the client's log and the move's timeline. */
  split?: StallSplit[]
}

export class Failover {
  private timer: NodeJS.Timeout | null = null
  private pending: Promise<FailoverRecord> | null = null

  private t0 = 0

  constructor(
    private readonly spec: FailoverSpec,
    private readonly clusterDir: string,
    private readonly say: (line: string) => void,
  ) {}

  arm(t0: number): void {
    this.t0 = t0
    this.timer = setTimeout(() => (this.pending = this.fire(t0)), this.spec.atS * 1000)
  }

  /** The record, once the takeover is over; a failover the run did not reach is cancelled. */
  async settle(): Promise<FailoverRecord> {
    if (this.timer) clearTimeout(this.timer)
    if (this.pending) return this.withSplit(await this.pending)
    return { ...this.base(), fault_ms: null, served_ms: null, move: null, error: `not done: the run ended before ${this.spec.atS} s` }
  }

  private base(): Pick<FailoverRecord, 'what' | 'mode' | 'requested_ms'> {
    return { what: this.spec.what, mode: this.spec.mode, requested_ms: this.spec.atS * 1000 }
  }

  /**
   * Where the stall of each moved target went, from the client's log, read once the run is
   * over (the client reconnects after the takeover returns) and the move's timeline.
   */
  private async withSplit(r: FailoverRecord): Promise<FailoverRecord> {
    if (!r.move || r.fault_ms === null) return r
    const lc = await LocalCluster.open(this.clusterDir)
    const fault = r.fault_ms
    const fenced = r.move.timeline.find((e) => e.event.endsWith(' fenced (SIGKILL)'))
    const split = await Promise.all(
      r.move.moved.map(async (m): Promise<StallSplit> => {
        const s = await recoverySplit(logOf(lc.dir, 'client'), lc.cf.targets[m.target]!.names.at(-1)!, this.t0 + fault, m.at)
        const served = m.at - this.t0
        return {
          target: m.target,
          lost_ms: s.detectionMs === null ? null : fault + s.detectionMs,
          fenced_ms: fenced ? r.move!.t0 - this.t0 + fenced.ms : null,
          served_ms: served,
          restored_ms: s.recoveryMs === null ? null : served + s.recoveryMs,
        }
      }),
    )
    for (const x of split) this.say(`${x.target}: ${splitLine(x, fault)}`)
    return { ...r, split }
  }

  private async fire(t0: number): Promise<FailoverRecord> {
    const called = Date.now() - t0
    this.say(`+${(called / 1000).toFixed(2)} s: failing ${this.spec.what} (${this.spec.mode}), its partner takes over after ${this.spec.deadtimeMs / 1000} s`)
    try {
      const lc = await LocalCluster.open(this.clusterDir)
      const partition = this.spec.mode === 'partition'
      const move = await clusterFail(lc, { what: this.spec.what, mode: FAIL_MODES[this.spec.mode], takeover: true, deadtimeMs: this.spec.deadtimeMs, partition })
      if (partition) this.say(await healLink(lc, move.node).then((l) => l.join('; ')))
      // The move's own clock: its fault comes after a status probe, which a loaded machine makes slow.
      const at = (ms: number) => move.t0 - t0 + ms
      for (const e of move.timeline) this.say(`+${(at(e.ms) / 1000).toFixed(2)} s: ${e.event}`)
      const served = move.moved.length ? at(Math.max(...move.moved.map((m) => m.ms))) : null
      return { ...this.base(), fault_ms: at(move.timeline[0]?.ms ?? 0), served_ms: served, move, error: null }
    } catch (e) {
      this.say(`failover of ${this.spec.what} failed: ${(e as Error).message}`)
      return { ...this.base(), fault_ms: called, served_ms: null, move: null, error: (e as Error).message }
    }
  }
}

/** detection / fencing / takeover / client recovery, each from the previous step, in seconds. */
export function splitLine(x: StallSplit, faultMs: number): string {
  const s = (ms: number | null) => (ms === null ? '?' : `${(ms / 1000).toFixed(2)} s`)
  const fencedOrFault = x.fenced_ms ?? faultMs
  return [
    `detection ${s(x.lost_ms === null ? null : x.lost_ms - faultMs)}`,
    `fencing ${s(x.fenced_ms === null ? null : x.fenced_ms - faultMs)}`,
    `takeover ${s(x.served_ms - fencedOrFault)}`,
    `client recovery ${s(x.restored_ms === null ? null : x.restored_ms - x.served_ms)}`,
  ].join(', ')
}

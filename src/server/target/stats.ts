import { LatencyFeed, StatsSet, type Unit } from '../../common/stats.js'
import { OPS, type OpName } from '../../protocol/ops.js'
import type { TargetKind } from '../../protocol/names.js'

/**
 * A target's service counters: each request it handled, by op (Lustre's obdfilter.*.stats on
 * an OST, mdt.*.md_stats on an MDT) with its time in the target in microseconds, the bytes an
 * OST read and wrote, and each latency for /metrics. Counted when the answer leaves,
 * whatever it says: a refused request also cost the service its time.
 */
const PREFIX = /^(mdt|ost|mgs)_/

/** Lustre's names: the op without its service prefix (ost_write is obdfilter's write). */
export function statName(op: string): string {
  return op.replace(PREFIX, '')
}

export class TargetStats {
  readonly set: StatsSet
  readonly latency = new LatencyFeed()

  constructor(kind: TargetKind) {
    const units: Record<string, Unit> = kind === 'ost' ? { read_bytes: 'bytes', write_bytes: 'bytes' } : {}
    for (const [op, spec] of Object.entries(OPS)) if ((spec.kinds as readonly string[]).includes(kind)) units[statName(op)] = 'usecs'
    this.set = new StatsSet(units)
  }

  /** A request answered after `ms`; `bytes`: the bulk an OST read or write moved. */
  record(op: OpName, ms: number, bytes: number): void {
    this.set.add(statName(op), ms * 1000)
    if (op === 'ost_read' || op === 'ost_write') this.set.add(op === 'ost_read' ? 'read_bytes' : 'write_bytes', bytes)
    this.latency.tell(statName(op), ms / 1000)
  }
}

/**
 * The counters every layer keeps, shaped as Lustre's lprocfs keeps them: a set of named
 * counters (samples, and for a unit also min, max and sum: llite.*.stats, md_stats,
 * obdfilter.*.stats), obd_histogram's buckets (osc.*.rpc_stats), and a feed of RPC
 * latencies that /metrics observes into Prometheus histograms. Counters only ever grow: a scraper
 * sees a decrease only as a restart.
 */
export type Unit = 'reqs' | 'usecs' | 'bytes'

export interface CounterView {
  samples: number
  unit: Unit
  min?: number
  max?: number
  sum?: number
}

interface Counter {
  samples: number
  min: number
  max: number
  sum: number
}

export class StatsSet {
  private readonly counters = new Map<string, Counter>()

  /** `units`: each counter's name and unit, in the order they are shown. */
  constructor(private readonly units: Readonly<Record<string, Unit>>) {}

  /** One sample of `name`; `value` is in the counter's unit (ignored for reqs). */
  add(name: string, value = 1): void {
    if (!(name in this.units)) throw new Error(`no counter '${name}' in this stats set`)
    let c = this.counters.get(name)
    if (!c) this.counters.set(name, (c = { samples: 0, min: Infinity, max: 0, sum: 0 }))
    c.samples += 1
    c.sum += value
    c.min = Math.min(c.min, value)
    c.max = Math.max(c.max, value)
  }

  samples(name: string): number {
    return this.counters.get(name)?.samples ?? 0
  }

  sum(name: string): number {
    return this.counters.get(name)?.sum ?? 0
  }

  names(): string[] {
    return Object.keys(this.units)
  }

  unit(name: string): Unit {
    return this.units[name]!
  }

  /** What get_param shows: like lprocfs, only the counters with samples, in table order. */
  view(): Record<string, CounterView> {
    const out: Record<string, CounterView> = {}
    for (const name of this.names()) {
      const c = this.counters.get(name)
      if (!c) continue
      const unit = this.units[name]!
      out[name] = unit === 'reqs' ? { samples: c.samples, unit } : { samples: c.samples, unit, min: Math.round(c.min), max: Math.round(c.max), sum: Math.round(c.sum) }
    }
    return out
  }
}

/** obd_histogram: counts per bucket, the bucket chosen by the caller's rule. */
export class Histogram {
  private readonly counts: number[]

  constructor(
    private readonly size: number,
    private readonly label: (i: number) => string,
  ) {
    this.counts = new Array<number>(size).fill(0)
  }

  /** Lustre's lprocfs_oh_tally: bucket `value`, the last one taking everything above. */
  tally(value: number): void {
    this.counts[Math.min(Math.max(0, Math.floor(value)), this.size - 1)]! += 1
  }

  /** Lustre's lprocfs_oh_tally_log2: bucket i holds values up to 2^i. */
  tallyLog2(value: number): void {
    this.tally(value <= 1 ? 0 : Math.ceil(Math.log2(value)))
  }

  get total(): number {
    return this.counts.reduce((a, b) => a + b, 0)
  }

  /** Rows up to the last non-empty bucket: [count, percent, cumulative percent], as rpc_stats prints them. */
  view(): Record<string, [number, number, number]> {
    const total = this.total
    const out: Record<string, [number, number, number]> = {}
    let last = this.size - 1
    while (last >= 0 && this.counts[last] === 0) last--
    let cum = 0
    for (let i = 0; i <= last; i++) {
      const n = this.counts[i]!
      cum += n
      out[this.label(i)] = [n, Math.floor((n * 100) / total), Math.floor((cum * 100) / total)]
    }
    return out
  }
}

/**
 * Each RPC's latency as it completes, for whoever watches (/metrics observes them into its
 * histograms): the layer tells, it keeps no second copy.
 */
export type LatencyWatcher = (op: string, seconds: number) => void

export class LatencyFeed {
  private readonly watchers = new Set<LatencyWatcher>()

  /** Returns the call that stops watching. */
  watch(fn: LatencyWatcher): () => void {
    this.watchers.add(fn)
    return () => void this.watchers.delete(fn)
  }

  tell(op: string, seconds: number): void {
    for (const w of this.watchers) w(op, seconds)
  }
}

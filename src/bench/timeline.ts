/**
 * Throughput over time: completed operations counted in 100 ms buckets of the run, and what
 * a failure did to it (the stall and the recovery), computed from those buckets alone.
 */
export const BUCKET_MS = 100

export interface Buckets {
  bytes: number[]
  ops: number[]
}

/** Counts completions into the bucket of their completion time, relative to the run's t0. */
export class Meter implements Buckets {
  readonly bytes: number[] = []
  readonly ops: number[] = []

  constructor(private readonly t0: number) {}

  add(now: number, bytes: number): void {
    const i = Math.max(0, Math.floor((now - this.t0) / BUCKET_MS))
    while (this.bytes.length <= i) {
      this.bytes.push(0)
      this.ops.push(0)
    }
    this.bytes[i]! += bytes
    this.ops[i]! += 1
  }
}

export function mergeBuckets(list: Buckets[]): Buckets {
  const n = Math.max(0, ...list.map((b) => b.bytes.length))
  const out: Buckets = { bytes: new Array<number>(n).fill(0), ops: new Array<number>(n).fill(0) }
  for (const b of list)
    for (let i = 0; i < b.bytes.length; i++) {
      out.bytes[i]! += b.bytes[i]!
      out.ops[i]! += b.ops[i] ?? 0
    }
  return out
}

/** Index of the last bucket where anything completed, -1 if none. */
export function lastActiveBucket(b: Buckets): number {
  for (let i = b.bytes.length - 1; i >= 0; i--) if (b.bytes[i]! > 0 || b.ops[i]! > 0) return i
  return -1
}

export function median(xs: number[]): number | null {
  if (!xs.length) return null
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** A bucket's count as a rate per second. */
export function perSecond(count: number): number {
  return (count * 1000) / BUCKET_MS
}

/** Buckets a recovered throughput must hold on average: one lucky bucket (replayed writes completing at once) is not a recovery. */
export const RECOVERY_WINDOW = 5

export interface Impact {
  /** Median per bucket of the job's whole buckets before the fault; null if the fault came first. */
  pre_median: number | null
  /**
   * First to last zero-throughput bucket from the fault (or the job's start, for a job that
   * started during the outage) to the recovery; without a pre-failure median, to the first
   * data after the partner served; else to the job's end.
   */
  stall_ms: number
  stall_from_ms: number | null
  stall_to_ms: number | null
  /** From the partner serving to the start of the first RECOVERY_WINDOW buckets averaging at least the pre-failure median; null: not within the job. */
  recovered_after_served_ms: number | null
}

/**
 * What a fault at `faultMs` did to a job whose data moved between `fromMs` and `toMs` (its
 * last data operation, before the closing fsync, whose zero buckets are not a stall);
 * `series` is the run's bytes (or operations) per bucket. The fault may precede the job: one
 * that started while the target was down has a stall but no pre-failure median.
 */
export function failureImpact(series: number[], o: { fromMs: number; toMs: number; faultMs: number; servedMs: number | null }): Impact {
  const at = (i: number) => series[i] ?? 0
  const first = Math.ceil(o.fromMs / BUCKET_MS)
  const last = Math.floor(o.toMs / BUCKET_MS) - 1
  const fault = Math.max(first, Math.floor(o.faultMs / BUCKET_MS))
  const pre: number[] = []
  for (let i = first; i < Math.min(fault, last + 1); i++) pre.push(at(i))
  const preMedian = median(pre)

  let recovered: number | null = null
  if (preMedian !== null && o.servedMs !== null) {
    for (let i = Math.max(fault, Math.floor(o.servedMs / BUCKET_MS)); i + RECOVERY_WINDOW - 1 <= last && recovered === null; i++) {
      let sum = 0
      for (let j = i; j < i + RECOVERY_WINDOW; j++) sum += at(j)
      if (sum / RECOVERY_WINDOW >= preMedian) recovered = i
    }
  }

  let end = recovered ?? last
  if (preMedian === null && o.servedMs !== null) {
    const resumed = series.findIndex((v, i) => i >= Math.floor(o.servedMs! / BUCKET_MS) && v > 0)
    if (resumed >= 0) end = Math.min(end, resumed)
  }
  let from: number | null = null
  let to: number | null = null
  for (let i = fault; i <= end; i++) {
    if (at(i) !== 0) continue
    from ??= i
    to = i
  }
  return {
    pre_median: preMedian,
    stall_ms: from === null ? 0 : (to! - from + 1) * BUCKET_MS,
    stall_from_ms: from === null ? null : from * BUCKET_MS,
    stall_to_ms: to === null ? null : (to + 1) * BUCKET_MS,
    recovered_after_served_ms: recovered === null || o.servedMs === null ? null : Math.max(0, recovered * BUCKET_MS - o.servedMs),
  }
}

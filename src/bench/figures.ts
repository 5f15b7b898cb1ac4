import type { JobName } from './jobs.js'
import { median } from './timeline.js'
import type { JobResult } from './result.js'

/** The headline figures of a run, each the median over the repetitions of its job. */
export interface Metric {
  key: string
  label: string
  unit: 'MB/s' | 'ops/s'
  job: JobName
  of: (j: JobResult) => number | undefined
}

export const METRICS: Metric[] = [
  { key: 'write1', label: 'seq write, 1 stream', unit: 'MB/s', job: 'write1', of: (j) => j.mb_per_s },
  { key: 'write4', label: 'seq write, 4 streams', unit: 'MB/s', job: 'write4', of: (j) => j.mb_per_s },
  { key: 'read1', label: 'seq read, 1 stream', unit: 'MB/s', job: 'read1', of: (j) => j.mb_per_s },
  { key: 'read4', label: 'seq read, 4 streams', unit: 'MB/s', job: 'read4', of: (j) => j.mb_per_s },
  { key: 'randwrite_ops', label: '4 KiB random write', unit: 'ops/s', job: 'randwrite', of: (j) => j.ops_per_s },
  { key: 'randwrite_mb', label: '4 KiB random write', unit: 'MB/s', job: 'randwrite', of: (j) => j.mb_per_s },
  { key: 'creates', label: 'creates', unit: 'ops/s', job: 'meta', of: (j) => j.phases?.create?.per_s },
  { key: 'stats', label: 'stats', unit: 'ops/s', job: 'meta', of: (j) => j.phases?.stat?.per_s },
  { key: 'unlinks', label: 'unlinks', unit: 'ops/s', job: 'meta', of: (j) => j.phases?.unlink?.per_s },
]

export interface Figure {
  median: number | null
  /** Every repetition's value, in order. */
  runs: number[]
  /** Errors the application saw in those jobs. */
  errors: number
}

export function figures(jobs: JobResult[]): Record<string, Figure> {
  const out: Record<string, Figure> = {}
  for (const m of METRICS) {
    const js = jobs.filter((j) => j.name === m.job)
    if (!js.length) continue
    const runs = js.map(m.of).filter((v): v is number => v !== undefined)
    out[m.key] = { median: median(runs), runs, errors: js.reduce((a, j) => a + j.errors.count, 0) }
  }
  return out
}

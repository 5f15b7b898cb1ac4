import { mergeBuckets, type Buckets } from './timeline.js'
import type { JobName } from './jobs.js'

/** What a stream and a job report: the figures, and every error the application saw. */
export interface AppError {
  at_ms: number
  op: string
  error: string
}

export interface Errors {
  count: number
  /** The first few, in order. */
  first: AppError[]
}

export interface StreamResult {
  bytes: number
  ops: number
  /** Relative to the run's t0. */
  start_ms: number
  /** Last data operation (a write job's fsync and close come after). */
  data_end_ms: number
  end_ms: number
  buckets: Buckets
  errors: Errors
  /** The metadata mix: operations and milliseconds of each phase. */
  phases?: Record<string, { ops: number; ms: number }>
  /** The random writer: writes issued (the verifier replays that many offsets). */
  issued?: number
  /** The verifier: pages that differ from what was written, and the first of them. */
  bad_pages?: number
  first_bad?: string[]
}

export interface JobResult {
  name: JobName | 'verify'
  rep: number
  tool: 'native' | 'fio'
  streams: number
  bytes: number
  ops: number
  start_ms: number
  data_end_ms: number
  end_ms: number
  seconds: number
  mb_per_s: number
  ops_per_s: number
  phases?: Record<string, { ops: number; seconds: number; per_s: number }>
  errors: Errors
  issued?: number
  bad_pages?: number
  first_bad?: string[]
  /** Largest resident size of the client process seen during the job (MiB), when known. */
  client_rss_max_mib?: number | null
}

export const MAX_ERRORS_KEPT = 20

export function mergeErrors(list: Errors[]): Errors {
  const first = list.flatMap((e) => e.first).sort((a, b) => a.at_ms - b.at_ms).slice(0, MAX_ERRORS_KEPT)
  return { count: list.reduce((a, e) => a + e.count, 0), first }
}

/** A job's figures and its share of the run's timeline. */
export interface JobRun {
  result: JobResult
  buckets: Buckets
}

/** `parts`: the workers' streams, or fio's runs (one per call, covering `streams` streams). */
export function jobRun(name: JobResult['name'], rep: number, tool: JobResult['tool'], parts: StreamResult[], streams = parts.length): JobRun {
  return { result: jobResult(name, rep, tool, parts, streams), buckets: mergeBuckets(parts.map((s) => s.buckets)) }
}

/** A job's figures from its parts: time runs from the first one's start to the last one's end (fsync included). */
function jobResult(name: JobResult['name'], rep: number, tool: JobResult['tool'], parts: StreamResult[], streamCount: number): JobResult {
  const streams = parts
  const start = Math.min(...streams.map((s) => s.start_ms))
  const end = Math.max(...streams.map((s) => s.end_ms))
  const seconds = Math.max(end - start, 1) / 1000
  const bytes = streams.reduce((a, s) => a + s.bytes, 0)
  const ops = streams.reduce((a, s) => a + s.ops, 0)
  const r: JobResult = {
    name,
    rep,
    tool,
    streams: streamCount,
    bytes,
    ops,
    start_ms: start,
    data_end_ms: Math.max(...streams.map((s) => s.data_end_ms)),
    end_ms: end,
    seconds,
    mb_per_s: bytes / 1e6 / seconds,
    ops_per_s: ops / seconds,
    errors: mergeErrors(streams.map((s) => s.errors)),
  }
  const phases = Object.assign({}, ...streams.map((s) => s.phases)) as NonNullable<StreamResult['phases']>
  if (Object.keys(phases).length) r.phases = Object.fromEntries(Object.entries(phases).map(([k, p]) => [k, { ops: p.ops, seconds: p.ms / 1000, per_s: p.ops / (Math.max(p.ms, 1) / 1000) }]))
  const issued = streams.find((s) => s.issued !== undefined)?.issued
  if (issued !== undefined) r.issued = issued
  if (streams.some((s) => s.bad_pages !== undefined)) {
    r.bad_pages = streams.reduce((a, s) => a + (s.bad_pages ?? 0), 0)
    r.first_bad = streams.flatMap((s) => s.first_bad ?? []).slice(0, MAX_ERRORS_KEPT)
  }
  return r
}

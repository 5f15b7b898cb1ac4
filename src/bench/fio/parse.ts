import { BUCKET_MS, type Buckets } from '../timeline.js'

/** Reading what fio writes: its JSON report (--output-format=json) and its 100 ms bandwidth and IOPS logs. */
export interface FioFigures {
  bytes: number
  ops: number
  read_bytes: number
  read_ops: number
  runtime_ms: number
  /** fio's errno of the first job that failed, 0 if none. */
  error: number
}

interface FioDir {
  io_bytes: number
  total_ios: number
  runtime: number
}

export function parseFioJson(text: string): FioFigures {
  // fio may print notes before the JSON document.
  const doc = JSON.parse(text.slice(text.indexOf('{'))) as { jobs: Array<{ error: number; read: FioDir; write: FioDir; trim: FioDir }> }
  const out: FioFigures = { bytes: 0, ops: 0, read_bytes: 0, read_ops: 0, runtime_ms: 0, error: 0 }
  for (const j of doc.jobs) {
    out.read_bytes += j.read.io_bytes
    out.read_ops += j.read.total_ios
    for (const d of [j.read, j.write, j.trim]) {
      out.bytes += d.io_bytes
      out.ops += d.total_ios
      out.runtime_ms = Math.max(out.runtime_ms, d.runtime)
    }
    out.error ||= j.error
  }
  return out
}

/**
 * Adds a fio log (lines `msec, value, direction, bs, offset`, value averaged over the
 * --log_avg_msec window that ends at msec) into run buckets; `startMs` is fio's start
 * relative to the run's t0, `perSecond` what one unit of value is worth per second
 * (1024 bytes for KiB/s bandwidth logs, 1 op for IOPS logs).
 */
export function addFioLog(into: number[], text: string, startMs: number, perSecond: number): void {
  for (const line of text.split('\n')) {
    const [ms, value] = line.split(',').map((f) => Number(f.trim()))
    if (!Number.isFinite(ms) || !Number.isFinite(value)) continue
    const i = Math.max(0, Math.floor((startMs + ms! - BUCKET_MS) / BUCKET_MS))
    while (into.length <= i) into.push(0)
    into[i]! += (value! * perSecond * BUCKET_MS) / 1000
  }
}

export function fioBuckets(bwLogs: string[], iopsLogs: string[], startMs: number): Buckets {
  const b: Buckets = { bytes: [], ops: [] }
  for (const t of bwLogs) addFioLog(b.bytes, t, startMs, 1024)
  for (const t of iopsLogs) addFioLog(b.ops, t, startMs, 1)
  const n = Math.max(b.bytes.length, b.ops.length)
  for (const a of [b.bytes, b.ops]) while (a.length < n) a.push(0)
  return b
}

/** Live rate from fio's status line (`[w=312MiB/s][w=312 IOPS]`), bytes per second; null if the line has none. */
export function fioEtaRate(line: string): number | null {
  const m = /\[[rw]=([\d.]+)([KMGT]?)i?B\/s\]/.exec(line)
  if (!m) return null
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[m[2] as '' | 'K' | 'M' | 'G' | 'T']
  return Number(m[1]) * mult
}

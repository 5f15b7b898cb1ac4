import path from 'node:path'

/**
 * The workloads, as issue 5 lists them, and the plan of one run: which jobs in which order,
 * each split into the streams that worker processes (or fio) run.
 */
export const JOB_NAMES = ['write1', 'read1', 'write4', 'read4', 'randwrite', 'meta'] as const
export type JobName = (typeof JOB_NAMES)[number]

export interface Workload {
  jobs: JobName[]
  /** Bytes per sequential job, split among its streams. */
  size: number
  blockSize: number
  /** File size of the random writer and how long it writes. */
  randSize: number
  randSeconds: number
  metaFiles: number
  /** Each job this many times (figures are the medians). */
  repeat: number
  /** Seed of the data; repetition r writes with seed + r, so a stale page from an earlier one shows. */
  seed: number
}

export const META_FILE_BYTES = 4096

/** One stream of a job, as a worker process runs it. Paths are absolute; `file` ids the data. */
export type StreamSpec =
  | { kind: 'write'; path: string; file: number; size: number; bs: number; seed: number }
  | { kind: 'read'; path: string; size: number; bs: number }
  | { kind: 'randwrite'; path: string; file: number; size: number; seconds: number; seed: number }
  | { kind: 'meta'; dir: string; count: number; file: number; seed: number }
  | { kind: 'verify'; path: string; file: number; size: number; bs: number; seed: number; randomWrites?: number }

export interface PlannedJob {
  name: JobName | 'verify'
  rep: number
  /** Reads: the client's and the kernel's caches are emptied first, so the data come from the targets. */
  reads: boolean
  streams: StreamSpec[]
}

const SEQ_STREAMS: Partial<Record<JobName, number>> = { write1: 1, read1: 1, write4: 4, read4: 4 }
/** Data ids of the files: seqN-i is N*10+i, so no two files hold the same bytes. */
const FILE_IDS = { rand: 20, meta: 100 }

function streamsOf(name: JobName): number {
  return SEQ_STREAMS[name] ?? 1
}

/** The sequential files of a job: write4 and read4 share seq4-0..3. */
function seqFiles(dir: string, name: JobName): string[] {
  const n = streamsOf(name)
  return Array.from({ length: n }, (_, i) => path.join(dir, `seq${n}-${i}`))
}

/** Reads need the files of the matching write earlier in the list. */
export function checkJobs(jobs: JobName[]): void {
  for (const [i, j] of jobs.entries()) {
    if (!j.startsWith('read')) continue
    const w = j.replace('read', 'write') as JobName
    if (!jobs.slice(0, i).includes(w)) throw new Error(`job ${j} reads the files ${w} writes: list ${w} before it`)
  }
}

export function plan(w: Workload, dir: string): PlannedJob[] {
  checkJobs(w.jobs)
  const out: PlannedJob[] = []
  for (let rep = 0; rep < w.repeat; rep++) {
    const seed = (w.seed + rep) >>> 0
    for (const name of w.jobs) out.push({ name, rep, reads: name.startsWith('read'), streams: streams(w, dir, name, seed) })
  }
  return out
}

function streams(w: Workload, dir: string, name: JobName, seed: number): StreamSpec[] {
  const files = seqFiles(dir, name)
  const share = w.size / files.length
  switch (name) {
    case 'write1':
    case 'write4':
      return files.map((p, i) => ({ kind: 'write', path: p, file: files.length * 10 + i, size: share, bs: w.blockSize, seed }))
    case 'read1':
    case 'read4':
      return files.map((p) => ({ kind: 'read', path: p, size: share, bs: w.blockSize }))
    case 'randwrite':
      return [{ kind: 'randwrite', path: path.join(dir, 'rand'), file: FILE_IDS.rand, size: w.randSize, seconds: w.randSeconds, seed }]
    case 'meta':
      return [{ kind: 'meta', dir: path.join(dir, 'meta'), count: w.metaFiles, file: FILE_IDS.meta, seed }]
  }
}

/**
 * What the files hold once the plan ran: the last write of each file, as a verify job.
 * `randomWrites` is how many random writes the last random writer issued (from its result).
 */
export function verifyJob(jobs: PlannedJob[], randomWrites: number | undefined): PlannedJob {
  const last = new Map<string, StreamSpec>()
  for (const j of jobs) for (const s of j.streams) if (s.kind === 'write' || s.kind === 'randwrite') last.set(s.path, s)
  const streams: StreamSpec[] = []
  for (const s of last.values()) {
    if (s.kind === 'write') streams.push({ kind: 'verify', path: s.path, file: s.file, size: s.size, bs: s.bs, seed: s.seed })
    else if (s.kind === 'randwrite' && randomWrites !== undefined)
      streams.push({ kind: 'verify', path: s.path, file: s.file, size: s.size, bs: 1 << 20, seed: s.seed, randomWrites })
  }
  return { name: 'verify', rep: 0, reads: true, streams }
}

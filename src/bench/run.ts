import { promises as fsp } from 'node:fs'
import { freshCaches } from './caches.js'
import type { Failover, FailoverRecord } from './failover.js'
import { figures, type Figure } from './figures.js'
import { runFio } from './fio/run.js'
import type { BenchFs } from './fs/types.js'
import { verifyJob, type PlannedJob } from './jobs.js'
import type { Live } from './live.js'
import type { JobResult } from './result.js'
import { runStreams } from './runner.js'
import { Sampler, type Samples } from './sampler.js'
import { jobLine } from './table.js'
import { BUCKET_MS, failureImpact, mergeBuckets, perSecond, type Buckets, type Impact } from './timeline.js'

/**
 * The plan on one filesystem: the jobs in order (caches emptied before each read), the
 * failover if one is armed, then every byte verified; throughput timeline, import states and
 * client RSS recorded throughout.
 */
export interface RunSpec {
  fs: BenchFs
  plan: PlannedJob[]
  /** The bench's directory on the mount (removed at the end). */
  dir: string
  tool: 'native' | 'fio'
  failover: Failover | null
  live: Live
}

export interface RunResult {
  fs: string
  tool: 'native' | 'fio'
  description: string
  started: string
  jobs: JobResult[]
  figures: Record<string, Figure>
  verify: JobResult
  verified: boolean
  app_errors: number
  /** What was done before each read to empty the caches. */
  caches: string[]
  timeline: { bucket_ms: number } & Buckets
  samples: Samples
  failover: FailoverRecord | null
  impact: ({ job: string; unit: 'MB/s' | 'ops/s'; pre_median_per_s: number | null } & Omit<Impact, 'pre_median'>) | null
  replayed: { requests: number; bytes: number } | null
}

export async function runOn(s: RunSpec): Promise<RunResult> {
  const { fs, live } = s
  await fs.prepare(s.dir)
  const run = s.tool === 'fio' ? runFio : runStreams
  const started = new Date()
  const t0 = started.getTime()
  const sampler = new Sampler(fs, t0)
  const buckets: Buckets[] = []
  const caches: string[] = []
  const one = async (job: PlannedJob): Promise<JobResult> => {
    if (job.reads) caches.push(await freshCaches(fs))
    live.begin(`${fs.name} ${job.name}${job.rep ? `#${job.rep + 1}` : ''}`)
    const r = await run(job, t0, (p) => live.update(p)).finally(() => live.end())
    r.result.client_rss_max_mib = sampler.rssMax(r.result.start_ms, r.result.end_ms)
    buckets.push(r.buckets)
    live.say(jobLine(fs.name, r.result))
    return r.result
  }

  sampler.start()
  live.watch(() => sampler.latest)
  s.failover?.arm(t0)
  const jobs: JobResult[] = []
  let failover: FailoverRecord | null = null
  let verify: JobResult
  try {
    try {
      for (const job of s.plan) jobs.push(await one(job))
    } finally {
      // Nothing is verified, nor torn down, while a takeover still runs.
      failover = (await s.failover?.settle()) ?? null
    }
    const rand = [...jobs].reverse().find((j) => j.name === 'randwrite')
    verify = await one(verifyJob(s.plan, rand?.issued))
  } finally {
    sampler.stop()
    live.watch(() => ({ imports: null, rss_mib: null }))
  }
  const timeline = { bucket_ms: BUCKET_MS, ...mergeBuckets(buckets) }
  const replayed = fs.replayed ? await fs.replayed() : null
  await fsp.rm(s.dir, { recursive: true, force: true })
  return {
    fs: fs.name,
    tool: s.tool,
    description: fs.description,
    started: started.toISOString(),
    jobs,
    figures: figures(jobs),
    verify,
    // The verify job reads back the files that remain; the metadata mix read its own before unlinking them.
    verified: [verify, ...jobs].every((j) => !j.bad_pages) && verify.errors.count === 0,
    app_errors: jobs.reduce((a, j) => a + j.errors.count, 0),
    caches,
    timeline,
    samples: sampler.samples,
    failover,
    impact: failover ? impactOf(failover, jobs, timeline) : null,
    replayed,
  }
}

/**
 * The failure's effect on the job it fell in, or else on the first job that started before
 * the partner served (the fault fell between jobs: that one met the outage). Operations for
 * the metadata mix, bytes otherwise.
 */
function impactOf(f: FailoverRecord, jobs: JobResult[], t: Buckets): RunResult['impact'] {
  const fault = f.fault_ms
  if (fault === null) return null
  const job = jobs.find((j) => j.start_ms <= fault && fault < j.end_ms) ?? jobs.find((j) => j.start_ms > fault && j.start_ms < (f.served_ms ?? Infinity))
  if (!job) return null
  const meta = job.name === 'meta'
  const { pre_median, ...rest } = failureImpact(meta ? t.ops : t.bytes, { fromMs: job.start_ms, toMs: job.data_end_ms, faultMs: fault, servedMs: f.served_ms })
  const pre = pre_median === null ? null : meta ? perSecond(pre_median) : perSecond(pre_median) / 1e6
  return { job: `${job.name}${job.rep ? `#${job.rep + 1}` : ''}`, unit: meta ? 'ops/s' : 'MB/s', pre_median_per_s: pre, ...rest }
}

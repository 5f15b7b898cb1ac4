import { once } from 'node:events'
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { PlannedJob, StreamSpec } from './jobs.js'
import { jobRun, type JobRun, type StreamResult } from './result.js'

/**
 * Runs a job's streams in worker processes (dist/bench/worker.js), started together once all
 * are ready, and sums their progress for the live display.
 */
const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url))

export interface Progress {
  bytes: number
  ops: number
}

/** The processes of a running job, so that an interrupted harness can end them. */
const liveWorkers = new Set<ChildProcess>()

/** Kills every workload process still running (an interrupted run: their mount is about to go), and waits until they are gone. */
export async function killWorkers(): Promise<void> {
  await Promise.all(
    [...liveWorkers].map((w) => {
      const gone = w.exitCode !== null || w.signalCode !== null ? Promise.resolve() : once(w, 'exit').then(() => undefined)
      w.kill('SIGKILL')
      return gone
    }),
  )
}

export async function runStreams(job: PlannedJob, t0: number, onProgress: (p: Progress) => void): Promise<JobRun> {
  const workers = job.streams.map((s) => new Worker(s))
  const latest = workers.map(() => ({ bytes: 0, ops: 0 }))
  workers.forEach((w, i) =>
    w.onProgress((p) => {
      latest[i] = p
      onProgress(latest.reduce((a, x) => ({ bytes: a.bytes + x.bytes, ops: a.ops + x.ops }), { bytes: 0, ops: 0 }))
    }),
  )
  await Promise.all(workers.map((w) => w.ready)).catch((e: unknown) => {
    for (const w of workers) w.kill()
    throw e
  })
  for (const w of workers) w.go(t0)
  const results = await Promise.all(workers.map((w) => w.done(t0)))
  return jobRun(job.name, job.rep, 'native', results)
}

class Worker {
  private readonly child: ChildProcess
  readonly ready: Promise<void>
  private readonly finished: Promise<StreamResult | string>

  constructor(readonly spec: StreamSpec) {
    this.child = fork(WORKER, [JSON.stringify(spec)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    liveWorkers.add(this.child)
    let result: StreamResult | undefined
    this.ready = new Promise((resolve, reject) => {
      this.child.on('message', (m: { type: string; result?: StreamResult }) => {
        if (m.type === 'ready') resolve()
        if (m.type === 'done') result = m.result
      })
      this.child.once('exit', (code, sig) => reject(new Error(`worker for ${describe(spec)} exited (${sig ?? code}) before starting`)))
    })
    this.finished = new Promise((resolve) =>
      this.child.once('exit', (code, sig) => {
        liveWorkers.delete(this.child)
        resolve(result ?? `worker exited (${sig ?? code}) without a result`)
      }),
    )
  }

  onProgress(fn: (p: { bytes: number; ops: number }) => void): void {
    this.child.on('message', (m: { type: string; bytes: number; ops: number }) => {
      if (m.type === 'progress') fn({ bytes: m.bytes, ops: m.ops })
    })
  }

  kill(): void {
    this.child.kill('SIGKILL')
  }

  go(t0: number): void {
    this.child.send({ t0 })
  }

  /** Its result; a worker that died counts as an error of the stream. */
  async done(t0: number): Promise<StreamResult> {
    const r = await this.finished
    if (typeof r !== 'string') return r
    const now = Date.now() - t0
    const error = { at_ms: now, op: describe(this.spec), error: r }
    return { bytes: 0, ops: 0, start_ms: now, data_end_ms: now, end_ms: now, buckets: { bytes: [], ops: [] }, errors: { count: 1, first: [error] } }
  }
}

function describe(s: StreamSpec): string {
  return `${s.kind} ${'path' in s ? s.path : s.dir}`
}

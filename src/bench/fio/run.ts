import { spawn } from 'node:child_process'
import { promises as fsp } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { PlannedJob } from '../jobs.js'
import { jobRun, MAX_ERRORS_KEPT, type JobRun, type StreamResult } from '../result.js'
import type { Progress } from '../runner.js'
import { BUCKET_MS, lastActiveBucket } from '../timeline.js'
import { fioCalls, type FioCall } from './args.js'
import { fioBuckets, fioEtaRate, parseFioJson, type FioFigures } from './parse.js'

/**
 * `--fio`: a planned job run by fio instead of the harness's workers. fio's JSON gives the
 * figures, its 100 ms logs the timeline, its status line the live rate.
 */
export async function runFio(job: PlannedJob, t0: number, onProgress: (p: Progress) => void): Promise<JobRun> {
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'lproxy-fio-'))
  try {
    const parts: StreamResult[] = []
    for (const [i, c] of fioCalls(job).entries()) parts.push(await runCall(c, path.join(work, `c${i}`), t0, job.name === 'meta', onProgress))
    return jobRun(job.name, job.rep, 'fio', parts, job.streams.length)
  } finally {
    await fsp.rm(work, { recursive: true, force: true })
  }
}

async function runCall(c: FioCall, prefix: string, t0: number, phased: boolean, onProgress: (p: Progress) => void): Promise<StreamResult> {
  await fsp.mkdir(c.dir, { recursive: true })
  const args = [...c.args, `--output=${prefix}.json`, `--write_bw_log=${prefix}`, `--write_iops_log=${prefix}`, '--log_avg_msec=100', '--eta=always', '--eta-newline=1', '--eta-interval=250ms']
  // fio saves verify state files in its working directory: keep them in our temporary one.
  const child = spawn('fio', args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: path.dirname(prefix) })
  let stderr = ''
  let estimate = 0
  let last = Date.now()
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    for (const line of chunk.split(/[\r\n]/)) {
      const rate = fioEtaRate(line)
      if (rate === null) continue
      const now = Date.now()
      estimate += (rate * (now - last)) / 1000
      last = now
      onProgress({ bytes: estimate, ops: 0 })
    }
  })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-8192)))
  const code = await new Promise<number>((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code, sig) => resolve(code ?? (sig ? 128 : 1)))
  })
  const endMs = Date.now() - t0
  const json = await fsp.readFile(`${prefix}.json`, 'utf8').catch(() => null)
  const fig: FioFigures = json ? parseFioJson(json) : { bytes: 0, ops: 0, read_bytes: 0, read_ops: 0, runtime_ms: 0, error: 0 }
  // fio's own runtime leaves out its start-up (file layout, forks), as the workers' figures do.
  const startMs = endMs - fig.runtime_ms
  const logs = await readLogs(prefix)
  const buckets = fioBuckets(logs.bw, logs.iops, startMs)
  const lastActive = lastActiveBucket(buckets)
  const failures = code !== 0 || fig.error !== 0 || !json
  const said = stderr.split('\n').filter((l) => l.trim())
  // A verify-only run reports the writes it checks as well as its reads: count the reads.
  const verifying = c.phase.startsWith('verify')
  const r: StreamResult = {
    bytes: verifying ? fig.read_bytes : fig.bytes,
    ops: verifying ? fig.read_ops : fig.ops,
    start_ms: startMs,
    data_end_ms: lastActive >= 0 ? Math.min(endMs, (lastActive + 1) * BUCKET_MS) : endMs,
    end_ms: endMs,
    buckets,
    errors: failures ? { count: 1, first: [{ at_ms: endMs, op: `fio ${c.phase}`, error: `exit ${code}, errno ${fig.error}: ${said.slice(-3).join(' / ')}` }] } : { count: 0, first: [] },
  }
  if (phased) r.phases = { [c.phase]: { ops: fig.ops, ms: fig.runtime_ms } }
  if (verifying) {
    const bad = said.filter((l) => /verify failed|bad magic|verify:/.test(l))
    r.bad_pages = failures ? Math.max(bad.length, 1) : 0
    r.first_bad = bad.slice(0, MAX_ERRORS_KEPT)
  }
  return r
}

async function readLogs(prefix: string): Promise<{ bw: string[]; iops: string[] }> {
  const dir = path.dirname(prefix)
  const base = path.basename(prefix)
  const names = await fsp.readdir(dir)
  const read = (kind: string) => Promise.all(names.filter((n) => n.startsWith(`${base}_${kind}.`)).map((n) => fsp.readFile(path.join(dir, n), 'utf8')))
  return { bw: await read('bw'), iops: await read('iops') }
}

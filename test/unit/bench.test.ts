import { promises as fsp } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { fioCalls } from '../../src/bench/fio/args.js'
import { addFioLog, fioEtaRate, parseFioJson } from '../../src/bench/fio/parse.js'
import { checkJobs, plan, verifyJob, type Workload } from '../../src/bench/jobs.js'
import { PAGE, Pattern } from '../../src/bench/pattern.js'
import { prng, randomPages } from '../../src/bench/prng.js'
import { compactJson } from '../../src/bench/report.js'
import { metaStream } from '../../src/bench/streams/meta.js'
import { Stream } from '../../src/bench/streams/stream.js'
import { chart, niceStep } from '../../src/bench/svg.js'
import { failureImpact, median, mergeBuckets, Meter } from '../../src/bench/timeline.js'

/** The harness's logic without a mount: data generation, bucketing, stall/recovery, plans, fio parsing, the chart, the metadata mix on tmpfs. */

describe('verification data', () => {
  it('the same seed gives the same sequence in any process; another seed another one', () => {
    const a = prng(42)
    const b = prng(42)
    const xs = Array.from({ length: 5 }, () => a())
    expect(Array.from({ length: 5 }, () => b())).toEqual(xs)
    expect(prng(43)()).not.toBe(xs[0])
    const pages = randomPages(7, 100)
    for (let i = 0; i < 1000; i++) expect(pages()).toBeLessThan(100)
  })

  it('a block reads back clean, and a misplaced, lost or foreign page is found', () => {
    const p = new Pattern(1)
    const bs = 16 * PAGE
    const block = p.fill(Buffer.alloc(bs), 5, 3 * bs)
    const scratch = Buffer.alloc(bs)
    expect(p.badPages(block, 5, 3 * bs, bs, scratch)).toEqual([])
    // Deterministic per offset, not per call.
    expect(p.fill(Buffer.alloc(bs), 5, 3 * bs).equals(block)).toBe(true)

    const moved = Buffer.from(block)
    p.fill(moved.subarray(2 * PAGE, 3 * PAGE), 5, 3 * bs + 7 * PAGE, PAGE)
    expect(p.badPages(moved, 5, 3 * bs, bs, scratch)).toEqual([3 * bs + 2 * PAGE])

    const lost = Buffer.from(block).fill(0, 4 * PAGE, 5 * PAGE)
    expect(p.badPages(lost, 5, 3 * bs, bs, scratch)).toEqual([3 * bs + 4 * PAGE])

    expect(p.badPages(block, 6, 3 * bs, bs, scratch)).toHaveLength(16)
    expect(new Pattern(2).badPages(block, 5, 3 * bs, bs, scratch)).toHaveLength(16)
  })

  it('pages never written must be holes', () => {
    const p = new Pattern(9)
    const buf = Buffer.alloc(4 * PAGE)
    p.fill(buf.subarray(PAGE, 2 * PAGE), 1, PAGE, PAGE)
    const scratch = Buffer.alloc(4 * PAGE)
    expect(p.badPages(buf, 1, 0, 4 * PAGE, scratch, (at) => at === PAGE)).toEqual([])
    expect(p.badPages(buf, 1, 0, 4 * PAGE, scratch, (at) => at === 2 * PAGE)).toEqual([PAGE, 2 * PAGE])
  })
})

describe('timeline', () => {
  it('counts completions in 100 ms buckets of the run, and merges streams', () => {
    const m = new Meter(1000)
    m.add(1000, 10)
    m.add(1099, 5)
    m.add(1350, 7)
    expect(m.bytes).toEqual([15, 0, 0, 7])
    expect(m.ops).toEqual([2, 0, 0, 1])
    expect(mergeBuckets([m, { bytes: [1, 1], ops: [1, 1] }])).toEqual({ bytes: [16, 1, 0, 7], ops: [3, 1, 0, 1] })
    expect(median([3, 1, 2])).toBe(2)
    expect(median([4, 1, 2, 3])).toBe(2.5)
    expect(median([])).toBeNull()
  })

  // A job moving 10 per bucket from 0 to 2 s, a fault at 2.05 s, buffered data for two more
  // buckets, nothing until the partner serves at 4.0 s, a burst of what waited, a short lull,
  // then steady again to 6 s.
  const series = [...Array(20).fill(10), 8, 6, ...Array(18).fill(0), 30, 0, 0, 2, ...Array(16).fill(10)]

  it('the stall runs from the first to the last zero bucket after the fault', () => {
    const i = failureImpact(series, { fromMs: 0, toMs: 6000, faultMs: 2050, servedMs: 4000 })
    expect(i.pre_median).toBe(10)
    // The burst is not a recovery: the first 5-bucket window averaging >= 10 starts at 4.4 s,
    // and the stall runs to the lull's last zero bucket.
    expect(i.recovered_after_served_ms).toBe(400)
    expect(i.stall_from_ms).toBe(2200)
    expect(i.stall_to_ms).toBe(4300)
    expect(i.stall_ms).toBe(2100)
  })

  it('no recovery within the job, and the closing fsync is not a stall', () => {
    const short = failureImpact(series, { fromMs: 0, toMs: 4600, faultMs: 2050, servedMs: 4000 })
    expect(short.recovered_after_served_ms).toBeNull()
    expect(short.stall_ms).toBe(2100)
    const clean = failureImpact([...Array(10).fill(5), 0, 0, 0], { fromMs: 0, toMs: 1000, faultMs: 500, servedMs: null })
    expect(clean.stall_ms).toBe(0)
    expect(clean.stall_from_ms).toBeNull()
  })

  it('a fault before the first whole bucket has no pre-failure median', () => {
    const i = failureImpact(series, { fromMs: 50, toMs: 6000, faultMs: 80, servedMs: 4000 })
    expect(i.pre_median).toBeNull()
    expect(i.recovered_after_served_ms).toBeNull()
  })

  it('a job that started during the outage: its stall runs from its start to the first data after the partner served', () => {
    // The fault at 1.0 s, between jobs; the next job starts at 1.5 s, waits, then moves data
    // from 4.0 s, the partner serving at 3.9 s; a slow bucket later is not part of the stall.
    const run = [...Array(10).fill(10), ...Array(30).fill(0), 5, 10, 0, 10, 10]
    const i = failureImpact(run, { fromMs: 1500, toMs: 4500, faultMs: 1000, servedMs: 3900 })
    expect(i.pre_median).toBeNull()
    expect(i.stall_from_ms).toBe(1500)
    expect(i.stall_to_ms).toBe(4000)
    expect(i.stall_ms).toBe(2500)
  })
})

describe('plan', () => {
  const w: Workload = { jobs: ['write1', 'read1', 'write4', 'read4', 'randwrite', 'meta'], size: 64 << 20, blockSize: 1 << 20, randSize: 1 << 20, randSeconds: 1, metaFiles: 10, repeat: 2, seed: 100 }

  it('splits jobs into streams, repetitions with their own seed', () => {
    const p = plan(w, '/m/b')
    expect(p.map((j) => `${j.name}#${j.rep}`)).toEqual([
      'write1#0', 'read1#0', 'write4#0', 'read4#0', 'randwrite#0', 'meta#0',
      'write1#1', 'read1#1', 'write4#1', 'read4#1', 'randwrite#1', 'meta#1',
    ])
    expect(p[2]!.streams.map((s) => ('path' in s ? s.path : ''))).toEqual(['/m/b/seq4-0', '/m/b/seq4-1', '/m/b/seq4-2', '/m/b/seq4-3'])
    expect(p[2]!.streams[0]).toMatchObject({ kind: 'write', size: 16 << 20, seed: 100 })
    expect(p[6]!.streams[0]).toMatchObject({ kind: 'write', seed: 101 })
    expect(p.filter((j) => j.reads).map((j) => j.name)).toEqual(['read1', 'read4', 'read1', 'read4'])
  })

  it('a read needs its write before it', () => {
    expect(() => checkJobs(['read1', 'write1'])).toThrow(/write1/)
    expect(() => checkJobs(['write4', 'read4', 'meta'])).not.toThrow()
  })

  it('verifies the last write of each file, and the random writer by the count it issued', () => {
    const v = verifyJob(plan(w, '/m/b'), 77)
    expect(v.reads).toBe(true)
    expect(v.streams).toHaveLength(6)
    expect(v.streams.every((s) => s.kind === 'verify' && s.seed === 101)).toBe(true)
    expect(v.streams.find((s) => s.kind === 'verify' && s.randomWrites !== undefined)).toMatchObject({ path: '/m/b/rand', randomWrites: 77 })
    expect(verifyJob(plan(w, '/m/b'), undefined).streams).toHaveLength(5)
  })
})

describe('fio', () => {
  it('runs the same files, sizes and streams as the workers', () => {
    const [write4] = plan({ jobs: ['write4'], size: 64 << 20, blockSize: 1 << 20, randSize: 4096, randSeconds: 1, metaFiles: 3, repeat: 1, seed: 1 }, '/m/b')
    const [c] = fioCalls(write4!)
    expect(c!.dir).toBe('/m/b')
    expect(c!.args).toEqual(expect.arrayContaining(['--filename_format=seq4-$jobnum', '--numjobs=4', `--size=${16 << 20}`, '--bs=1048576', '--rw=write', '--end_fsync=1']))
    const [meta] = plan({ jobs: ['meta'], size: 1 << 20, blockSize: 1 << 20, randSize: 4096, randSeconds: 1, metaFiles: 3, repeat: 1, seed: 1 }, '/m/b')
    expect(fioCalls(meta!).map((x) => x.phase)).toEqual(['create', 'stat', 'unlink'])
    expect(fioCalls(meta!)[2]!.args).toContain('--ioengine=filedelete')
  })

  it('reads its JSON, logs and status line', () => {
    const dir = (io: number, ios: number, rt: number) => ({ io_bytes: io, total_ios: ios, runtime: rt })
    const json = `note: something\n${JSON.stringify({ jobs: [{ error: 0, read: dir(0, 0, 0), write: dir(8 << 20, 8, 250), trim: dir(0, 0, 0) }] })}`
    expect(parseFioJson(json)).toEqual({ bytes: 8 << 20, ops: 8, read_bytes: 0, read_ops: 0, runtime_ms: 250, error: 0 })
    const b: number[] = []
    addFioLog(b, '100, 1000, 1, 0, 0\n200, 2000, 1, 0, 0\n', 0, 1024)
    expect(b).toEqual([102400, 204800])
    expect(fioEtaRate('Jobs: 1 (f=1): [W(1)][50.0%][w=312MiB/s][w=312 IOPS][eta 00m:02s]')).toBe(312 * 2 ** 20)
    expect(fioEtaRate('Jobs: 1 (f=1): [f(1)][100.0%][eta 00m:00s]')).toBeNull()
  })
})

describe('record', () => {
  it('keeps number arrays on one line', () => {
    expect(compactJson({ a: [1, 2, 3], b: 'x' })).toBe('{\n "a": [1,2,3],\n "b": "x"\n}')
  })

  it('draws the curve, the jobs, the failure and the takeover', () => {
    expect(niceStep(37, 4)).toBe(10)
    expect(niceStep(0.9, 4)).toBe(0.5)
    const svg = chart([{ title: 'lproxy <x>', mbps: [1, 2, 3], bucketMs: 100, spans: [{ label: 'write1', from: 0, to: 300 }], marks: [{ at: 150, label: 'oss1 fails', color: 'red' }], stall: { from: 100, to: 200 } }])
    expect(svg).toMatch(/^<svg /)
    expect(svg).toContain('<polyline points="')
    expect(svg).toContain('oss1 fails')
    expect(svg).toContain('lproxy &lt;x&gt;')
  })
})

describe('metadata mix', () => {
  it('reads every small file back before unlinking it, and finds one that changed', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-meta-'))
    const readFile = fsp.readFile.bind(fsp)
    // A file that changed between its close and the read-back (as a lost or torn write would).
    const flipped = async (...args: Parameters<typeof fsp.readFile>) => {
      const b = (await readFile(...args)) as Buffer
      if (String(args[0]).endsWith('/f2')) b[100]! ^= 1
      return b
    }
    const spy = vi.spyOn(fsp, 'readFile').mockImplementation(flipped as typeof fsp.readFile)
    try {
      const st = new Stream(Date.now())
      const out = (await metaStream({ kind: 'meta', dir: path.join(dir, 'm'), count: 5, file: 100, seed: 7 })(st)) as {
        phases: Record<string, { ops: number }>
        bad_pages: number
        first_bad: string[]
      }
      expect(Object.keys(out.phases)).toEqual(['create', 'stat', 'verify', 'unlink'])
      expect(out.phases.verify!.ops).toBe(5)
      expect(out.bad_pages).toBe(1)
      expect(out.first_bad).toEqual([`${path.join(dir, 'm', 'f2')}@0`])
      // The bytes counted are the ones written; the files are gone.
      expect(st.progress().bytes).toBe(5 * 4096)
      expect(await fsp.readdir(dir)).toEqual([])
    } finally {
      spy.mockRestore()
      await fsp.rm(dir, { recursive: true, force: true })
    }
  })
})

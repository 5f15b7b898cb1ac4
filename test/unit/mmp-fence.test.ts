/**
 * The MMP fence and the adaptive interval, on a fake clock: a node resumed after a SIGSTOP
 * (every timer overdue, whichever runs first) reads its MMP block again before any write,
 * and once it finds another node's sequence nothing of it reaches the target. Block writes
 * that take long stretch the interval the block records, and a starting node waits by it.
 */
import { describe, it, expect, afterAll, afterEach, vi } from 'vitest'
import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { ManualClock, type Clock, type Timer } from '../../src/common/clock.js'
import { silentLogger } from '../../src/common/log.js'
import { LpError } from '../../src/protocol/errno.js'
import { Mmp, mmpWaitMs, readMmp, type MmpBlock } from '../../src/server/target/mmp.js'
import { Target } from '../../src/server/target/target.js'
import { OstBackend } from '../../src/server/ost/ost.js'
import { tempDir, removeTempDirs } from '../helpers/nodes.js'
import { OST_NAME, TestClient, testTunables } from '../helpers/target.js'

/**
 * Writes of the MMP block take `ms` of fake time (a slow LUN), and nothing else: the block
 * itself is written at once, so that the fake clock, which the tests move while real I/O
 * runs, does not count that I/O as write time.
 */
const slow = vi.hoisted(() => ({ ms: 0, clock: null as { sleep(ms: number): Promise<void> } | null }))
vi.mock('../../src/common/fsutil.js', async (orig) => {
  const m = await orig<typeof import('../../src/common/fsutil.js')>()
  const fs = await import('node:fs')
  return {
    ...m,
    writeFileAtomic: async (file: string, data: string | Uint8Array, guard?: () => Promise<void>) => {
      if (path.basename(file) !== 'mmp') return m.writeFileAtomic(file, data, guard)
      if (slow.ms && slow.clock) await slow.clock.sleep(slow.ms)
      fs.writeFileSync(`${file}.tmp`, data)
      fs.renameSync(`${file}.tmp`, file)
    },
  }
})

afterAll(removeTempDirs)

const INTERVAL = 1000
const NID = '127.0.84.1@tcp'

/**
 * The fake clock as a process resumed after SIGSTOP sees it: `stall(ms)` moves time on
 * without firing any timer, so whatever the test runs next finds every timer overdue.
 */
class StallClock implements Clock {
  private skew = 0
  constructor(readonly m: ManualClock) {}
  now(): number {
    return this.m.now() + this.skew
  }
  wallNow(): number {
    return this.m.wallNow() + this.skew
  }
  setTimeout(fn: () => void, ms: number): Timer {
    return this.m.setTimeout(fn, ms)
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return this.m.sleep(ms, signal)
  }
  stall(ms: number): void {
    this.skew += ms
  }
}

/** Advance the fake clock in steps until `p` settles (real file I/O runs in between). */
async function drive<T>(clock: ManualClock, p: Promise<T>, step = 50): Promise<T> {
  let done = false
  const q = p.finally(() => (done = true))
  for (let i = 0; !done && i < 10_000; i++) await clock.advance(step)
  return q
}

const live: Mmp[] = []
afterEach(async () => {
  slow.ms = 0
  for (const m of live.splice(0)) await m.release(false)
  vi.restoreAllMocks()
})

function mmp(dir: string, clock: Clock, onForeign: (b: MmpBlock) => void = () => undefined, o: { node?: string; nid?: string; maxIntervalMs?: number } = {}): Mmp {
  const m = new Mmp({ dir, intervalMs: INTERVAL, clock, node: o.node ?? 'oss1', nid: o.nid ?? NID, onForeign, maxIntervalMs: o.maxIntervalMs })
  live.push(m)
  return m
}

/** The partner took over while we were stopped: its block replaces ours. */
async function takeover(dir: string): Promise<MmpBlock> {
  const b: MmpBlock = { seq: 4242, state: 'active', node: 'oss2', nid: '127.0.84.2@tcp', pid: 1, time: 1_700_000_000_000, interval: INTERVAL }
  await fsp.writeFile(path.join(dir, 'mmp'), JSON.stringify(b))
  return b
}

const fenceError = (e: unknown) => e instanceof LpError && e.code === 'ENODEV' && /MMP block now updated by node oss2 \(127\.0\.84\.2@tcp, pid 1\)/.test(e.message)

describe('MMP fence', () => {
  it('a fresh check lets writes through without reading; a stale one reads first and fences on a foreign block', async () => {
    const dir = await tempDir('lp-fence')
    const m0 = new ManualClock()
    const clock = new StallClock(m0)
    const seen: MmpBlock[] = []
    const m = mmp(dir, clock, (b) => seen.push(b))
    await drive(m0, m.acquire())
    expect(m.fenced).toBe(false)
    const reads = vi.spyOn(fsp, 'readFile')
    // (The clock moved while acquire's last read ran: that may take one read now.)
    await m.check()
    reads.mockClear()
    // Just checked: trusted for an interval (the clock stands still now), no read.
    await m.check()
    expect(reads).not.toHaveBeenCalled()
    const holder = await takeover(dir)
    // Still within the interval since our last good read: a write is allowed (the partner
    // cannot have started serving yet, it waits 2.5 intervals after its own write).
    await m.check()
    expect(m.fenced).toBe(false)
    // SIGSTOP, SIGCONT much later: the first writer runs before any timer.
    clock.stall(10 * INTERVAL)
    const errs = await Promise.all([m.check(), m.check(), m.check()].map((p) => p.then(() => null, (e: unknown) => e)))
    expect(errs.every(fenceError)).toBe(true)
    // One read for all of them, and the holder is reported once.
    expect(reads).toHaveBeenCalledTimes(1)
    expect(m.fenced).toBe(true)
    expect(seen).toEqual([holder])
    // For good: no more heartbeats over the partner's block, every later write refused.
    await m0.advance(5 * INTERVAL)
    expect(await readMmp(dir)).toEqual(holder)
    await expect(m.check()).rejects.toSatisfy(fenceError)
    await m.release(true)
    expect(await readMmp(dir)).toEqual(holder)
  })

  it('the heartbeat timer firing first after a resume fences too, and writes nothing over the holder', async () => {
    const dir = await tempDir('lp-fence')
    const m0 = new ManualClock()
    const clock = new StallClock(m0)
    const seen: MmpBlock[] = []
    const m = mmp(dir, clock, (b) => seen.push(b))
    await drive(m0, m.acquire())
    // Until a heartbeat landed, in steps short enough that the next one has not begun.
    const s0 = (await readMmp(dir))!.seq
    while ((await readMmp(dir))!.seq === s0) await m0.advance(INTERVAL / 10)
    const holder = await takeover(dir)
    clock.stall(10 * INTERVAL)
    await vi.waitFor(async () => {
      await m0.advance(INTERVAL)
      expect(seen).toEqual([holder])
    })
    await m0.advance(3 * INTERVAL)
    expect(await readMmp(dir)).toEqual(holder)
    await expect(m.check()).rejects.toSatisfy(fenceError)
  })

  it('a target fenced before its commit writes nothing to the journal; before its apply, nothing to the objects', async () => {
    const dir = await tempDir('lp-fence')
    const m0 = new ManualClock()
    const clock = new StallClock(m0)
    const seen: MmpBlock[] = []
    const fence = mmp(dir, clock, (b) => seen.push(b))
    await drive(m0, fence.acquire())
    const backend = new OstBackend(path.join(dir, 'ost'), fence)
    const target = await drive(
      m0,
      Target.open({ name: OST_NAME, kind: 'ost', dir: path.join(dir, 'ost'), clock, log: silentLogger, backend, replayable: true, tunables: testTunables(), fence }),
    )
    target.start()
    const c = new TestClient(target, 'client-a')
    await drive(m0, c.connect())
    // Committed and applied: the files as the partner will find them.
    await drive(m0, c.ok('ost_write', { fid: 1, stripe: 0, offset: 0 }, { bulk: Buffer.from('committed') }))
    await drive(m0, c.ok('sync'))
    await vi.waitFor(async () => expect(await fsp.readFile(path.join(dir, 'ost', 'O', 'd1', '1.0'), 'utf8')).toBe('committed'))

    // 1. A batch committed to the journal whose apply is held (the node stopped right there).
    let open!: () => void
    const gate = new Promise<void>((r) => (open = r))
    const apply = OstBackend.prototype.afterCommit
    vi.spyOn(OstBackend.prototype, 'afterCommit').mockImplementation(async function (this: OstBackend, redo) {
      await gate
      return apply.call(this, redo)
    })
    await drive(m0, c.ok('ost_write', { fid: 2, stripe: 0, offset: 0 }, { bulk: Buffer.from('journaled, not applied') }))
    await drive(m0, c.ok('sync'))
    // 2. A batch executed, not committed.
    await drive(m0, c.ok('ost_write', { fid: 1, stripe: 0, offset: 0 }, { bulk: Buffer.from('STALE!!!!') }))
    const before = await snapshot(dir)

    const holder = await takeover(dir)
    clock.stall(10 * INTERVAL)
    const before2 = await snapshot(dir)
    // Resumed: the apply goes on first, then a sync asks for the commit.
    open()
    const sync = await drive(m0, c.call('sync'))
    expect(sync.status).toBe(-19)
    expect(sync.error).toMatch(/oss2/)
    expect(seen).toEqual([holder])
    await target.stop(false)
    expect(await snapshot(dir)).toEqual(before2)
    expect(before2).toEqual(before)
    expect(await fsp.readFile(path.join(dir, 'ost', 'O', 'd1', '1.0'), 'utf8')).toBe('committed')
    await expect(fsp.stat(path.join(dir, 'ost', 'O', 'd2', '2.0'))).rejects.toThrow(/ENOENT/)
  })
})

/** Every file under `dir` but the MMP block: size, content, mtime and ctime (any write changes one). */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  const walk = async (d: string) => {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      const st = await fsp.stat(p)
      const key = path.relative(dir, p)
      // The MMP block is the partner's to write (and a heartbeat of ours may be in flight at the stop).
      if (key.startsWith('mmp')) continue
      if (e.isDirectory()) {
        out[key] = `dir ${st.mtimeMs} ${st.ctimeMs}`
        await walk(p)
      } else out[key] = `${st.size} ${st.mtimeMs} ${st.ctimeMs} ${(await fsp.readFile(p)).toString('base64')}`
    }
  }
  await walk(dir)
  return out
}

describe('MMP interval', () => {
  it('follows the block write time, bounded, and a starting node waits by the interval recorded in the block', async () => {
    const dir = await tempDir('lp-mmpint')
    const m0 = new ManualClock()
    slow.clock = m0
    const m = mmp(dir, m0, undefined, { maxIntervalMs: 8000 })
    await drive(m0, m.acquire(), 10)
    expect(m.intervalMs).toBe(INTERVAL)
    expect((await readMmp(dir))!.interval).toBe(INTERVAL)
    // The LUN gets slow: each block write takes 1.5 s.
    slow.ms = 1500
    /** Heartbeats go on (the fake clock moving) until `cond` holds. */
    const until = (cond: () => Promise<boolean>) =>
      drive(m0, (async () => {
        while (!(await cond())) await m0.advance(10)
      })(), 10)
    await until(async () => m.intervalMs > INTERVAL)
    // That write took 1.5 s: the interval is twice it; the next block records it.
    expect(m.intervalMs).toBeGreaterThanOrEqual(3000)
    expect(m.intervalMs).toBeLessThan(3200)
    await until(async () => (await readMmp(dir))!.interval! > INTERVAL)
    expect((await readMmp(dir))!.interval).toBe(m.intervalMs)
    // Slower still: bounded.
    slow.ms = 6000
    await until(async () => (await readMmp(dir))!.interval === 8000)
    expect(m.intervalMs).toBe(8000)

    // A node starting the target now waits by the holder's interval, not its own.
    slow.ms = 0
    const recorded = (await readMmp(dir))!.interval!
    const sleeps: number[] = []
    const c2: Clock = { ...m0, now: () => m0.now(), wallNow: () => m0.wallNow(), setTimeout: (f, ms) => m0.setTimeout(f, ms), sleep: (ms, s) => (sleeps.push(ms), m0.sleep(ms, s)) }
    // (A heartbeat may be in the middle of a slow write: the clock must move for it to end.)
    await drive(m0, m.release(false), 100)
    const other = mmp(dir, c2, undefined, { node: 'oss2', nid: '127.0.84.2@tcp' })
    await drive(m0, other.acquire(), 100)
    expect(sleeps).toEqual([mmpWaitMs(recorded), mmpWaitMs(recorded)])
    expect(mmpWaitMs(recorded)).toBeGreaterThan(mmpWaitMs(INTERVAL))
    // Its own writes are fast: the interval it records is its own.
    await until(async () => (await readMmp(dir))!.node === 'oss2' && (await readMmp(dir))!.interval === INTERVAL)
    expect(other.intervalMs).toBe(INTERVAL)
  })
})

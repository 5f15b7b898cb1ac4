import { describe, it, expect, afterAll, afterEach, vi } from 'vitest'
import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { realClock, type Clock } from '../../src/common/clock.js'
import { writeFileAtomic } from '../../src/common/fsutil.js'
import { LpError } from '../../src/protocol/errno.js'
import { Mmp, mmpWaitMs, readMmp, type MmpBlock } from '../../src/server/target/mmp.js'
import { tempDir, removeTempDirs } from '../helpers/nodes.js'

afterAll(removeTempDirs)

const INTERVAL = 50
/** What acquire waits each time it watches the block. */
const WAIT = 2 * INTERVAL + Math.ceil(INTERVAL / 2)

/** What a starting node waits by the block a holder left: its recorded interval grows when its writes were slow (a loaded machine). */
async function waitAfter(dir: string): Promise<number> {
  return mmpWaitMs(Math.max(INTERVAL, (await readMmp(dir))?.interval ?? 0))
}

/** The real clock, recording how long each sleep was asked to be. */
function recordingClock(): Clock & { sleeps: number[] } {
  const sleeps: number[] = []
  return { ...realClock, sleeps, sleep: (ms, signal) => (sleeps.push(ms), realClock.sleep(ms, signal)) }
}

const live: Mmp[] = []
afterEach(async () => {
  for (const m of live.splice(0)) await m.release(false)
})

function mmp(dir: string, n: number, onForeign: (b: MmpBlock) => void = () => undefined, clock: Clock = realClock): Mmp {
  const m = new Mmp({ dir, intervalMs: INTERVAL, clock, node: `oss${n}`, nid: `127.0.20.${n}@tcp`, onForeign })
  live.push(m)
  return m
}

/** Resolves once the holder has bumped its sequence `times` more times. */
async function heartbeats(dir: string, times: number): Promise<void> {
  const start = (await readMmp(dir))!.seq
  await expect.poll(async () => (await readMmp(dir))!.seq - start, { timeout: 5000, interval: 10 }).toBeGreaterThanOrEqual(times)
}

describe('multiple-mount protection', () => {
  it('takes a fresh target and heartbeats', async () => {
    const dir = await tempDir('lp-mmp')
    const clock = recordingClock()
    const m = mmp(dir, 1, undefined, clock)
    await m.acquire()
    // Nothing to watch before; after writing, it checks that nobody raced it.
    expect(clock.sleeps).toEqual([WAIT])
    expect(await readMmp(dir)).toMatchObject({ state: 'active', node: 'oss1', nid: '127.0.20.1@tcp', pid: process.pid })
    await heartbeats(dir, 3)
  })

  it('refuses a second node while the first heartbeats, naming the holder', async () => {
    const dir = await tempDir('lp-mmp')
    let foreign = false
    const first = mmp(dir, 1, () => (foreign = true))
    await first.acquire()
    const err = await mmp(dir, 2).acquire().then(
      () => null,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(LpError)
    expect((err as LpError).code).toBe('EBUSY')
    expect((err as LpError).message).toMatch(/in use by node oss1 \(127\.0\.20\.1@tcp, pid \d+\)/)
    expect((err as LpError).message).toMatch(/last update \d+\.\ds ago/)
    // The holder is undisturbed.
    await heartbeats(dir, 2)
    expect(foreign).toBe(false)
    expect(await readMmp(dir)).toMatchObject({ node: 'oss1' })
  })

  it('after a crash of the holder, the next node takes it once it waited', async () => {
    const dir = await tempDir('lp-mmp')
    const first = mmp(dir, 1)
    await first.acquire()
    await heartbeats(dir, 1)
    await first.release(false) // SIGKILL: the block stays 'active', its sequence stops
    expect(await readMmp(dir)).toMatchObject({ state: 'active', node: 'oss1' })
    const wait = await waitAfter(dir)
    const clock = recordingClock()
    const t0 = Date.now()
    await mmp(dir, 2, undefined, clock).acquire()
    // Not cleanly released: it watched the block before taking it, and after.
    expect(clock.sleeps).toEqual([wait, wait])
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2 * wait - 5)
    expect(await readMmp(dir)).toMatchObject({ state: 'active', node: 'oss2', nid: '127.0.20.2@tcp' })
  })

  it('after a clean release, the next node takes it without watching first', async () => {
    const dir = await tempDir('lp-mmp')
    const first = mmp(dir, 1)
    await first.acquire()
    await heartbeats(dir, 1)
    await first.release(true)
    expect(await readMmp(dir)).toMatchObject({ state: 'clean', node: 'oss1' })
    const wait = await waitAfter(dir)
    const clock = recordingClock()
    await mmp(dir, 2, undefined, clock).acquire()
    expect(clock.sleeps).toEqual([wait])
    expect(await readMmp(dir)).toMatchObject({ state: 'active', node: 'oss2' })
  })

  it('a clean release always leaves the block clean, even with a heartbeat in flight', async () => {
    const dir = await tempDir('lp-mmp')
    // A short interval, so that many releases meet a heartbeat being written.
    const fast = 10
    for (let i = 0; i < 40; i++) {
      const m = new Mmp({ dir, intervalMs: fast, clock: realClock, node: 'oss1', nid: '127.0.20.1@tcp', onForeign: () => undefined })
      live.push(m)
      await m.acquire()
      await realClock.sleep(fast + (i % fast))
      await m.release(true)
      expect(await readMmp(dir)).toMatchObject({ state: 'clean' })
      // Nothing of this holder lands afterwards either.
      await realClock.sleep(2)
      expect(await readMmp(dir)).toMatchObject({ state: 'clean' })
      live.splice(live.indexOf(m), 1)
    }
  })

  it('of two nodes starting at once, exactly one gets the target', async () => {
    for (let round = 0; round < 3; round++) {
      const dir = await tempDir('lp-mmp')
      const results = await Promise.allSettled([mmp(dir, 1).acquire(), mmp(dir, 2).acquire()])
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1)
      const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult
      expect(refused.reason).toBeInstanceOf(LpError)
      expect((refused.reason as LpError).code).toBe('EBUSY')
    }
  })

  it('a serving node that finds a foreign sequence in its block stops heartbeating and says who', async () => {
    const dir = await tempDir('lp-mmp')
    let holder: MmpBlock | undefined
    let foreign!: (b: MmpBlock) => void
    const seen = new Promise<MmpBlock>((resolve) => (foreign = resolve))
    await mmp(dir, 1, (b) => foreign((holder = b))).acquire()
    await heartbeats(dir, 1)
    const intruder: MmpBlock = { seq: 42, state: 'active', node: 'oss9', nid: '127.0.20.9@tcp', pid: 1, time: Date.now() }
    await writeFileAtomic(path.join(dir, 'mmp'), JSON.stringify(intruder))
    expect(await seen).toEqual(intruder)
    expect(holder).toEqual(intruder)
    // It stopped: no heartbeat of its own lands over the intruder's block.
    await realClock.sleep(3 * INTERVAL)
    expect(await readMmp(dir)).toEqual(intruder)
    expect(await fsp.readdir(dir)).toEqual(['mmp'])
  })
  it('heartbeats that fail to write (ENOSPC) leave the holder serving: the sequence left on disk is still its own, and a foreign one is still seen', async () => {
    const dir = await tempDir('lp-mmp')
    const seen: MmpBlock[] = []
    const m = mmp(dir, 1, (b) => seen.push(b))
    await m.acquire()
    const before = (await readMmp(dir))!
    // The disk is full for two heartbeats in a row: neither temp file can be written.
    let failed = 0
    const open = fsp.open.bind(fsp)
    const spy = vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
      if (String(args[0]).startsWith(path.join(dir, 'mmp.tmp')) && failed < 2) {
        failed += 1
        throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' })
      }
      return open(...args)
    })
    try {
      await expect.poll(() => failed, { timeout: 5000, interval: 10 }).toBe(2)
      expect(await readMmp(dir)).toEqual(before)
      // Space again: the next heartbeats read the old sequence, ours, and move it on.
      await heartbeats(dir, 2)
    } finally {
      spy.mockRestore()
    }
    expect(seen).toEqual([])
    expect(m.fenced).toBe(false)
    await m.check()
    const intruder: MmpBlock = { seq: 42, state: 'active', node: 'oss9', nid: '127.0.20.9@tcp', pid: 1, time: Date.now() }
    await writeFileAtomic(path.join(dir, 'mmp'), JSON.stringify(intruder))
    await expect.poll(() => seen, { timeout: 5000, interval: 10 }).toEqual([intruder])
    expect(m.fenced).toBe(true)
  })

  it('a heartbeat stopped between its temp file and the rename does not land over the block a partner wrote meanwhile', async () => {
    const dir = await tempDir('lp-mmp')
    // The clock a stopped process finds on waking: everything it checked is old.
    let asleep = 0
    const clock: Clock = { ...realClock, now: () => realClock.now() + asleep }
    let holder: MmpBlock | undefined
    await mmp(dir, 1, (b) => (holder = b), clock).acquire()
    const intruder: MmpBlock = { seq: 7, state: 'active', node: 'oss2', nid: '127.0.20.2@tcp', pid: 2, time: Date.now() }
    const open = fsp.open.bind(fsp)
    const spy = vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
      const fh = await open(...args)
      if (String(args[0]).startsWith(path.join(dir, 'mmp.tmp'))) {
        spy.mockRestore()
        // Stopped here, past its check interval; the partner takes the target meanwhile.
        asleep += 20 * INTERVAL
        await writeFileAtomic(path.join(dir, 'mmp'), JSON.stringify(intruder))
      }
      return fh
    })
    try {
      await expect.poll(() => holder, { timeout: 5000, interval: 10 }).toEqual(intruder)
    } finally {
      spy.mockRestore()
    }
    expect(await readMmp(dir)).toEqual(intruder)
  })

  it("a clean release refused between its temp file and the rename leaves the partner's block, and the stop goes on", async () => {
    const dir = await tempDir('lp-mmp')
    let asleep = 0
    // No heartbeat during the test (a long interval), and no real waiting in acquire.
    const clock: Clock = { ...realClock, now: () => realClock.now() + asleep, sleep: async () => undefined }
    const m = new Mmp({ dir, intervalMs: 60_000, clock, node: 'oss1', nid: '127.0.20.1@tcp', onForeign: () => undefined })
    live.push(m)
    await m.acquire()
    const intruder: MmpBlock = { seq: 9, state: 'active', node: 'oss2', nid: '127.0.20.2@tcp', pid: 2, time: Date.now() }
    const open = fsp.open.bind(fsp)
    const spy = vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
      const fh = await open(...args)
      if (String(args[0]).startsWith(path.join(dir, 'mmp.tmp'))) {
        spy.mockRestore()
        asleep += 10 * 60_000
        await writeFileAtomic(path.join(dir, 'mmp'), JSON.stringify(intruder))
      }
      return fh
    })
    try {
      await m.release(true)
    } finally {
      spy.mockRestore()
    }
    expect(await readMmp(dir)).toEqual(intruder)
  })
})

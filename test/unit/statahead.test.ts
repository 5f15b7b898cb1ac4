import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { ManualClock } from '../../src/common/clock.js'
import { Llite } from '../../src/llite/llite.js'
import { successor } from '../../src/llite/sequence.js'
import type { Glimpse, Lov } from '../../src/lov/lov.js'
import type { Mdc } from '../../src/mdc/mdc.js'
import { LpError } from '../../src/protocol/errno.js'
import type { Layout, MdtAttr } from '../../src/protocol/ops.js'

/** Statahead driven through llite with a fake MDT whose batches answer when the test says so. */
const layout: Layout = { stripe_size: 1 << 20, osts: [1] }
const file = (fid: number): MdtAttr => ({ fid, type: 'reg', mode: 0o644, uid: 0, gid: 0, nlink: 1, atime: 0, mtime: 0, ctime: 0, size: 0, layout })

function rig(statahead = { max: 8, batch: 4, agl: true }) {
  const clock = new ManualClock()
  /** The directory: name -> FID; file `fN` has N * 10 bytes. */
  const names = new Map<string, number>()
  for (let i = 0; i < 40; i++) names.set(`f${i}`, 100 + i)
  const sizes = new Map<number, number>([...names.values()].map((fid) => [fid, (fid - 100) * 10]))
  const lookups: string[] = []
  const batches: string[][] = []
  const pending: Array<() => void> = []
  let failBatches = false
  const glimpsed: number[][] = []
  const mdc = {
    lookup: async (_parent: number, name: string) => {
      lookups.push(name)
      const fid = names.get(name)
      if (fid === undefined) throw new LpError('ENOENT', name)
      return file(fid)
    },
    batchLookup: (_parent: number, batch: string[]) =>
      new Promise<(MdtAttr | null)[]>((resolve, reject) => {
        batches.push(batch)
        // The MDT reads the directory when it gets the batch, not when the test lets the reply through.
        const attrs = batch.map((n) => (names.has(n) ? file(names.get(n)!) : null))
        pending.push(() => (failBatches ? reject(new LpError('EIO', 'lost')) : resolve(attrs)))
      }),
    unlink: async (_parent: number, name: string) => {
      const fid = names.get(name)!
      names.delete(name)
      return { fid, nlink: 0, dirs: [], was: [] }
    },
  } as unknown as Mdc
  const glimpse = (fid: number): Glimpse => ({ size: sizes.get(fid) ?? 0, blocks: 0, mtime: 0 })
  const lov = {
    glimpse: async (fid: number) => {
      glimpsed.push([fid])
      return glimpse(fid)
    },
    glimpseMany: async (files: Array<{ fid: number }>) => {
      glimpsed.push(files.map((f) => f.fid))
      return files.map((f) => glimpse(f.fid))
    },
    cachedSize: () => 0,
    lost: () => false,
  } as unknown as Lov
  const ll = new Llite({ mdc, lov, clock, log: pino({ level: 'silent' }), attrTimeoutMs: 1000, uid: 0, gid: 0, readAheadChunk: 1 << 20, maxReadAheadPerFile: 1 << 24, maxReadAhead: 1 << 30, statahead })
  /** Let every batch sent so far answer. */
  const release = async () => {
    while (pending.length) pending.shift()!()
    await clock.advance(0)
  }
  const stat = async (name: string) => (await ll.lookupStat(1, name)).st.size
  return {
    clock,
    names,
    lookups,
    batches,
    glimpsed,
    ll,
    release,
    stat,
    failBatches: () => (failBatches = true),
  }
}

describe('successor', () => {
  it('numbers names as mdtest and job scripts do, keeping zero padding', () => {
    expect(['f9', 'x007', 'a1b2', '123', 'f099', 'f'].map(successor)).toEqual(['f10', 'x008', 'a1b3', '124', 'f100', undefined])
    expect(successor(`f${'9'.repeat(16)}`)).toBeUndefined()
  })
})

describe('statahead', () => {
  it('after three names in sequence, fetches the next ones in batches (with their sizes) and the lookups need no RPC', async () => {
    const r = rig()
    for (const n of ['f0', 'f1', 'f2']) await r.stat(n)
    expect(r.lookups).toEqual(['f0', 'f1', 'f2'])
    expect(r.batches).toEqual([
      ['f3', 'f4', 'f5', 'f6'],
      ['f7', 'f8', 'f9', 'f10'],
    ])
    await r.release()
    // One glimpse per batch for all its files, after the three stats' own.
    expect(r.glimpsed.slice(3)).toEqual([
      [103, 104, 105, 106],
      [107, 108, 109, 110],
    ])
    for (let i = 3; i <= 10; i++) expect(await r.stat(`f${i}`)).toBe(i * 10)
    expect(r.lookups).toEqual(['f0', 'f1', 'f2'])
    expect(r.glimpsed).toHaveLength(5)
    // Keeping statahead_max names ahead: each batch used up made room for the next.
    expect(r.batches.map((b) => b[0])).toEqual(['f3', 'f7', 'f11', 'f15'])
    expect(r.ll.statahead.stats).toMatchObject({ batches: 4, names: 16, hits: 8, stale: 0 })
  })

  it('follows the order a listing of the directory gave (ls -l), whatever the names', async () => {
    const r = rig()
    const order = ['zz', 'f7', 'aa', 'f1', 'mm', 'f30', 'bb', 'f2', 'cc', 'dd']
    order.forEach((n, i) => r.names.has(n) || r.names.set(n, 200 + i))
    r.ll.statahead.listed(1, order.map((name) => ({ name })))
    for (const n of order.slice(0, 3)) await r.stat(n)
    expect(r.batches).toEqual([
      ['f1', 'mm', 'f30', 'bb'],
      ['f2', 'cc', 'dd'],
    ])
    await r.release()
    for (const n of order.slice(3)) await r.stat(n)
    expect(r.lookups).toEqual(['zz', 'f7', 'aa'])
    expect(r.batches).toHaveLength(2)
  })

  it('follows a listing read in pages across their boundary', async () => {
    const r = rig()
    const order = ['zz', 'f7', 'aa', 'f1', 'mm', 'f30', 'bb', 'f2', 'cc', 'dd']
    order.forEach((n, i) => r.names.has(n) || r.names.set(n, 200 + i))
    r.ll.statahead.listed(1, order.slice(0, 5).map((name) => ({ name })))
    r.ll.statahead.listed(1, order.slice(5).map((name) => ({ name })), false)
    for (const n of order.slice(0, 3)) await r.stat(n)
    expect(r.batches).toEqual([
      ['f1', 'mm', 'f30', 'bb'],
      ['f2', 'cc', 'dd'],
    ])
  })

  it('makes a lookup of a name on the way wait for its batch instead of asking again', async () => {
    const r = rig()
    for (const n of ['f0', 'f1', 'f2']) await r.stat(n)
    const p = r.stat('f3')
    await r.clock.advance(0)
    expect(r.lookups).toHaveLength(3)
    await r.release()
    expect(await p).toBe(30)
    expect(r.lookups).toHaveLength(3)
  })

  it('keeps no answer for a name this client removed while its batch was out', async () => {
    const r = rig()
    for (const n of ['f0', 'f1', 'f2']) await r.stat(n)
    // f5 was looked up before, so the kernel may unlink it without a lookup.
    expect(r.batches[0]).toContain('f5')
    await r.ll.unlink(1, 'f5')
    await r.release()
    expect(r.ll.statahead.stats.stale).toBe(1)
    await r.stat('f3')
    await r.stat('f4')
    await expect(r.stat('f5')).rejects.toMatchObject({ code: 'ENOENT' })
    expect(r.lookups).toEqual(['f0', 'f1', 'f2', 'f5'])
  })

  it('stops at the end of the sequence, and when the process leaves it', async () => {
    const r = rig({ max: 8, batch: 4, agl: true })
    for (const n of ['f36', 'f37', 'f38']) await r.stat(n)
    await r.release()
    expect(r.batches).toEqual([
      ['f39', 'f40', 'f41', 'f42'],
      ['f43', 'f44', 'f45', 'f46'],
    ])
    await r.stat('f39')
    await r.release()
    expect(r.batches).toHaveLength(2) // f43..f46 found nothing: the sequence ended
    await r.stat('f1')
    await r.stat('f20')
    await r.release()
    expect(r.batches).toHaveLength(2)
  })

  it('fetches less far ahead of a process too slow to reach the answers before they expire', async () => {
    const r = rig({ max: 8, batch: 4, agl: true })
    // 300 ms a name, answers kept 1 s: eight names ahead would all expire on the way.
    for (let i = 0; i < 30; i++) {
      expect(await r.stat(`f${i}`)).toBe(i * 10)
      await r.release()
      await r.clock.advance(300)
    }
    expect(r.ll.statahead.stats.expired).toBeGreaterThan(0)
    // Without the narrower window every lookup from f6 on asks for itself.
    expect(r.lookups.length).toBeLessThan(12)
  })

  it('does nothing with statahead_max 0 or actimeo 0, and a failed batch leaves the lookups to ask for themselves', async () => {
    const off = rig({ max: 0, batch: 4, agl: true })
    for (let i = 0; i < 6; i++) await off.stat(`f${i}`)
    expect(off.batches).toEqual([])
    const noCache = rig()
    noCache.ll.cache.ttlMs = 0 // actimeo=0: nothing fetched could be kept
    for (let i = 0; i < 6; i++) await noCache.stat(`f${i}`)
    expect(noCache.batches).toEqual([])
    const r = rig()
    r.failBatches()
    for (const n of ['f0', 'f1', 'f2']) await r.stat(n)
    await r.release()
    expect(await r.stat('f3')).toBe(30)
    expect(r.lookups).toEqual(['f0', 'f1', 'f2', 'f3'])
    expect(r.ll.statahead.stats.failed).toBe(2)
  })
})

import { describe, expect, it } from 'vitest'
import { ManualClock } from '../../src/common/clock.js'
import { MetaCache } from '../../src/llite/cache.js'
import type { MdtAttr } from '../../src/protocol/ops.js'

const dirAttr = (fid: number, change: number): MdtAttr => ({ fid, type: 'dir', mode: 0o755, uid: 0, gid: 0, nlink: 2, atime: 0, mtime: 0, ctime: 0, size: 4096, change })

describe('names known absent in a directory this client made', () => {
  it('are absent until the attribute timeout, each of our own changes extending it', async () => {
    const clock = new ManualClock()
    const c = new MetaCache(clock, 1000)
    c.setWhole(7, 0)
    expect(c.absent(7, 'a')).toBe(true)
    expect(c.absent(8, 'a')).toBe(false) // not a directory known whole
    await clock.advance(800)
    c.dirChanged(7, 0, 1, (names) => names.add('a'))
    expect(c.absent(7, 'a')).toBe(false)
    expect(c.absent(7, 'b')).toBe(true)
    await clock.advance(800)
    expect(c.absent(7, 'b')).toBe(true) // 1600 ms after setWhole, 800 after the last proof
    c.dirChanged(7, 1, 2, (names) => names.delete('a'))
    expect(c.absent(7, 'a')).toBe(true)
    await clock.advance(1001)
    expect(c.absent(7, 'a')).toBe(false)
  })

  it('are forgotten when a change shows another client changed the directory meanwhile', () => {
    const c = new MetaCache(new ManualClock(), 1000)
    c.setWhole(7, 0)
    c.dirChanged(7, 1, 2, (names) => names.add('mine'))
    expect(c.absent(7, 'theirs')).toBe(false)
    c.dirChanged(7, 2, 3, (names) => names.add('more'))
    expect(c.absent(7, 'theirs')).toBe(false)
  })

  it('are confirmed by the directory attributes at the same counter, and forgotten at another', async () => {
    const clock = new ManualClock()
    const c = new MetaCache(clock, 1000)
    c.setWhole(7, 4)
    await clock.advance(900)
    c.setAttr(dirAttr(7, 4))
    await clock.advance(900)
    expect(c.absent(7, 'x')).toBe(true)
    c.setAttr(dirAttr(7, 5))
    expect(c.absent(7, 'x')).toBe(false)
  })

  it('are forgotten by clear and dropWhole, and never known with a zero timeout (actimeo=0)', () => {
    const c = new MetaCache(new ManualClock(), 1000)
    c.setWhole(7, 0)
    c.setWhole(9, 0)
    c.dropWhole(7)
    expect(c.absent(7, 'x')).toBe(false)
    c.clear()
    expect(c.absent(9, 'x')).toBe(false)
    const none = new MetaCache(new ManualClock(), 0)
    none.setWhole(7, 0)
    expect(none.absent(7, 'x')).toBe(false)
  })
})

describe('the attribute and entry cache', () => {
  it('sweeps expired entries as new ones come, so it does not grow with every file ever seen', async () => {
    const clock = new ManualClock()
    const c = new MetaCache(clock, 1000)
    const reg = (fid: number): MdtAttr => ({ ...dirAttr(fid, 0), type: 'reg', change: undefined })
    for (let i = 0; i < 3000; i++) {
      c.setEntry(1, `f${i}`, 100 + i)
      c.setAttr(reg(100 + i))
    }
    expect(c.size).toBe(6000)
    await clock.advance(1001)
    expect(c.entry(1, 'f0')).toBeUndefined()
    expect(c.guess(1, 'f0')?.fid).toBe(100) // expired: a guess, no longer an answer
    await clock.advance(10_000)
    for (let i = 0; i < 4000; i++) {
      c.setEntry(2, `g${i}`, 10_000 + i)
      c.setAttr(reg(10_000 + i))
    }
    // The first 6000 expired (and were past guessing) and were swept; the 8000 fresh ones stay.
    expect(c.size).toBe(8000)
    expect(c.guess(1, 'f0')).toBeUndefined()
    expect(c.entry(2, 'g0')).toBe(10_000)
    expect(c.attr(13_999)?.attr.fid).toBe(13_999)
  })
})

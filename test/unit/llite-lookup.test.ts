import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { ManualClock } from '../../src/common/clock.js'
import { Llite } from '../../src/llite/llite.js'
import type { Glimpse, Lov } from '../../src/lov/lov.js'
import type { Mdc } from '../../src/mdc/mdc.js'
import type { Layout, MdtAttr } from '../../src/protocol/ops.js'

const layout: Layout = { stripe_size: 1 << 20, osts: [1] }
const file = (fid: number, l = layout): MdtAttr => ({ fid, type: 'reg', mode: 0o644, uid: 0, gid: 0, nlink: 1, atime: 0, mtime: 0, ctime: 0, size: 0, layout: l })

/** An MDT whose lookups answer only when the test says so, and OSTs that count glimpses. */
function rig() {
  const clock = new ManualClock()
  const names = new Map<string, MdtAttr>()
  const lookups: Array<() => void> = []
  const glimpses: number[] = []
  const sizes = new Map<number, number>()
  const mdc = {
    lookup: (_parent: number, name: string) =>
      new Promise<MdtAttr>((resolve, reject) =>
        lookups.push(() => {
          const a = names.get(name)
          if (a) resolve(a)
          else reject(new Error('ENOENT'))
        }),
      ),
  } as unknown as Mdc
  const lov = {
    glimpse: async (fid: number): Promise<Glimpse> => {
      glimpses.push(fid)
      return { size: sizes.get(fid) ?? 0, blocks: 0, mtime: 0 }
    },
    cachedSize: () => 0,
  } as unknown as Lov
  const ll = new Llite({ mdc, lov, clock, log: pino({ level: 'silent' }), attrTimeoutMs: 1000, uid: 0, gid: 0, readAheadChunk: 1 << 20, maxReadAheadPerFile: 1 << 24 })
  /** Answer the pending MDT lookup, then let the stat finish. */
  const answer = async <T>(p: Promise<T>): Promise<T> => {
    await clock.advance(0)
    lookups.shift()!()
    return p
  }
  return { clock, names, glimpses, sizes, ll, answer }
}

describe('lookup and stat of a name whose cached attributes expired', () => {
  it('glimpses the file the name last named alongside the MDT lookup, and keeps that glimpse when the MDT confirms it', async () => {
    const r = rig()
    r.names.set('f', file(10))
    r.sizes.set(10, 4096)
    expect((await r.answer(r.ll.lookupStat(1, 'f'))).st.size).toBe(4096)
    expect(r.glimpses).toEqual([10]) // the first time, after the lookup: nothing was known
    await r.clock.advance(1001)
    r.sizes.set(10, 8192)
    const p = r.ll.lookupStat(1, 'f')
    await r.clock.advance(0)
    expect(r.glimpses).toEqual([10, 10]) // out before the MDT answered
    expect((await r.answer(p)).st.size).toBe(8192)
    expect(r.glimpses).toEqual([10, 10])
  })

  it('discards the early glimpse when the name now names another file or layout', async () => {
    const r = rig()
    r.names.set('f', file(10))
    await r.answer(r.ll.lookupStat(1, 'f'))
    await r.clock.advance(1001)
    r.names.set('f', file(11)) // replaced by another client meanwhile
    r.sizes.set(11, 100)
    const got = await r.answer(r.ll.lookupStat(1, 'f'))
    expect([got.attr.fid, got.st.size]).toEqual([11, 100])
    expect(r.glimpses).toEqual([10, 10, 11])
    await r.clock.advance(1001)
    r.names.set('f', file(11, { stripe_size: 1 << 20, osts: [2] }))
    await r.answer(r.ll.lookupStat(1, 'f'))
    expect(r.glimpses).toEqual([10, 10, 11, 11, 11])
  })

  it('sends no glimpse of its own while the attributes are fresh', async () => {
    const r = rig()
    r.names.set('f', file(10))
    await r.answer(r.ll.lookupStat(1, 'f'))
    const again = await r.ll.lookupStat(1, 'f')
    expect(again.st.size).toBe(0)
    expect(r.glimpses).toEqual([10])
  })
})

import { describe, expect, it } from 'vitest'
import { Lov } from '../../src/lov/lov.js'
import type { Osc } from '../../src/osc/osc.js'
import type { OscWriteback } from '../../src/osc/writeback.js'
import { LpError } from '../../src/protocol/errno.js'
import type { ObjAttr } from '../../src/protocol/ops.js'

/** Glimpses of many files (statahead's batch) over fake OSCs that record their getattr calls. */
const MiB = 1 << 20

function lovOver(sizes: Record<string, number>, invalid: Set<number> = new Set(), old: Set<number> = new Set()) {
  const calls: Array<[number, string[]]> = []
  const attrOf = (fid: number, stripe: number): ObjAttr | null => {
    const size = sizes[`${fid}.${stripe}`]
    return size === undefined ? null : { size, blocks: size / 512, mtime: fid }
  }
  const osc = (index: number) =>
    ({
      index,
      imp: { invalid: invalid.has(index) },
      read: async (fid: number, stripe: number, off: number, len: number) => {
        calls.push([index, [`read ${fid}.${stripe} ${off}+${len}`]])
        const data = Buffer.alloc(Math.max(0, Math.min(len, (attrOf(fid, stripe)?.size ?? 0) - off)), 1)
        return { data: [data], attr: old.has(index) ? undefined : attrOf(fid, stripe) }
      },
      getattr: async (objects: Array<{ fid: number; stripe: number }>): Promise<(ObjAttr | null)[]> => {
        calls.push([index, objects.map((o) => `${o.fid}.${o.stripe}`)])
        if (invalid.has(index)) throw new LpError('ESHUTDOWN', 'failed out')
        return objects.map((o) => attrOf(o.fid, o.stripe))
      },
    }) as unknown as Osc
  const wb = { cachedEnd: () => 0 } as unknown as OscWriteback
  const lov = new Lov(new Map([1, 2].map((i) => [i, osc(i)])), new Map([1, 2].map((i) => [i, wb])))
  return { lov, calls }
}

describe('glimpseMany', () => {
  const files = [
    { fid: 10, layout: { stripe_size: MiB, osts: [1, 2] } },
    { fid: 11, layout: { stripe_size: MiB, osts: [2] } },
    { fid: 12, layout: { stripe_size: MiB, osts: [1] } },
  ]

  it('asks each OST once for all its objects, and sizes every file from its own', async () => {
    const { lov, calls } = lovOver({ '10.0': MiB, '10.1': MiB / 2, '11.0': 100 })
    expect(await lov.glimpseMany(files)).toEqual([
      { size: MiB + MiB / 2, blocks: (MiB + MiB / 2) / 512, mtime: 10 },
      { size: 100, blocks: 100 / 512, mtime: 11 },
      { size: 0, blocks: 0, mtime: 0 },
    ])
    expect(calls.sort()).toEqual([
      [1, ['10.0', '12.0']],
      [2, ['10.1', '11.0']],
    ])
  })

  it('counts the stripes on a failed-out OST as empty', async () => {
    const { lov } = lovOver({ '10.0': MiB, '10.1': MiB / 2, '11.0': 100 }, new Set([2]))
    expect((await lov.glimpseMany(files)).map((g) => g.size)).toEqual([MiB, 0, 0])
  })
})

describe('readHead', () => {
  it("reads a file's first bytes, sized by the first stripe's read reply and the other stripes' getattr, as a glimpse would", async () => {
    const { lov, calls } = lovOver({ '13.0': MiB, '14.0': 100, '15.0': 64 * 1024, '15.1': 10 })
    const one = { stripe_size: MiB, osts: [1] }
    expect(await lov.readHead(12, one, 4096)).toEqual({ data: [Buffer.alloc(0)], glimpse: { size: 0, blocks: 0, mtime: 0 } })
    expect(await lov.readHead(13, one, 4096)).toEqual({ data: [Buffer.alloc(4096, 1)], glimpse: { size: MiB, blocks: MiB / 512, mtime: 13 } })
    expect(await lov.readHead(14, { stripe_size: MiB, osts: [1, 2] }, 4096)).toEqual({ data: [Buffer.alloc(100, 1)], glimpse: { size: 100, blocks: 100 / 512, mtime: 14 } })
    // Never past the first stripe: 64 KiB stripes, the second holding 10 bytes.
    expect(await lov.readHead(15, { stripe_size: 64 * 1024, osts: [1, 2] }, 1 << 20)).toEqual({
      data: [Buffer.alloc(64 * 1024, 1)],
      glimpse: { size: 64 * 1024 + 10, blocks: (64 * 1024 + 10) / 512, mtime: 15 },
    })
    expect(calls).toEqual([
      [1, ['read 12.0 0+4096']],
      [1, ['read 13.0 0+4096']],
      [1, ['read 14.0 0+4096']],
      [2, ['14.1']],
      [1, ['read 15.0 0+65536']],
      [2, ['15.1']],
    ])
  })

  it('gives up where the first stripe\'s OST does not say its attributes (older): the caller glimpses', async () => {
    const { lov } = lovOver({ '11.0': 100 }, new Set(), new Set([2]))
    expect(await lov.readHead(11, { stripe_size: MiB, osts: [2] }, 4096)).toBeUndefined()
    expect(await lov.readHead(11, { stripe_size: MiB, osts: [2, 1] }, 4096)).toBeUndefined()
  })
})

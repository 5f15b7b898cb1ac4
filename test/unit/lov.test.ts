import { describe, expect, it } from 'vitest'
import { Lov } from '../../src/lov/lov.js'
import type { Osc } from '../../src/osc/osc.js'
import type { OscWriteback } from '../../src/osc/writeback.js'
import { LpError } from '../../src/protocol/errno.js'
import type { ObjAttr } from '../../src/protocol/ops.js'

/** Glimpses of many files (statahead's batch) over fake OSCs that record their getattr calls. */
const MiB = 1 << 20

function lovOver(sizes: Record<string, number>, invalid: Set<number> = new Set()) {
  const calls: Array<[number, string[]]> = []
  const osc = (index: number) =>
    ({
      index,
      imp: { invalid: invalid.has(index) },
      getattr: async (objects: Array<{ fid: number; stripe: number }>): Promise<(ObjAttr | null)[]> => {
        calls.push([index, objects.map((o) => `${o.fid}.${o.stripe}`)])
        if (invalid.has(index)) throw new LpError('ESHUTDOWN', 'failed out')
        return objects.map((o) => {
          const size = sizes[`${o.fid}.${o.stripe}`]
          return size === undefined ? null : { size, blocks: size / 512, mtime: o.fid }
        })
      },
    }) as unknown as Osc
  const lov = new Lov(new Map([1, 2].map((i) => [i, osc(i)])), new Map<number, OscWriteback>())
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

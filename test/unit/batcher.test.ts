import { describe, expect, it } from 'vitest'
import { KeyedBatcher } from '../../src/common/batcher.js'

/** A sender whose calls the test completes one by one. */
function rig(max = 3) {
  const calls: Array<{ key: string; items: number[]; done: () => void; fail: (e: Error) => void }> = []
  const b = new KeyedBatcher<string, number>(max, (key, items) => new Promise<void>((done, fail) => calls.push({ key, items, done, fail })))
  return { b, calls }
}

const settled = async <T>(p: Promise<T>): Promise<'resolved' | 'rejected' | 'pending'> =>
  Promise.race([p.then(() => 'resolved' as const, () => 'rejected' as const), new Promise<'pending'>((r) => setImmediate(() => r('pending')))])

describe('a batcher with one batch in flight per key', () => {
  it('sends a lone item at once, and what comes meanwhile together next, at most `max` per batch', async () => {
    const { b, calls } = rig(3)
    const first = b.add('ost1', 1)
    const rest = [2, 3, 4, 5].map((n) => b.add('ost1', n))
    expect(calls.map((c) => c.items)).toEqual([[1]])
    calls[0]!.done()
    expect(await settled(first)).toBe('resolved')
    expect(calls.map((c) => c.items)).toEqual([[1], [2, 3, 4]])
    expect(await settled(rest[0]!)).toBe('pending')
    calls[1]!.done()
    await settled(rest[2]!)
    expect(calls.map((c) => c.items)).toEqual([[1], [2, 3, 4], [5]])
    calls[2]!.done()
    expect(await Promise.all(rest.map(settled))).toEqual(['resolved', 'resolved', 'resolved', 'resolved'])
  })

  it('keeps keys apart: each has its own batch in flight', () => {
    const { b, calls } = rig()
    void b.add('ost1', 1)
    void b.add('ost2', 2)
    void b.add('ost1', 3)
    expect(calls.map((c) => [c.key, c.items])).toEqual([
      ['ost1', [1]],
      ['ost2', [2]],
    ])
  })

  it('fails a failed batch and what waited behind it, and starts afresh for later items', async () => {
    const { b, calls } = rig()
    const a = b.add('ost1', 1)
    const c = b.add('ost1', 2)
    calls[0]!.fail(new Error('stopped'))
    await expect(a).rejects.toThrow('stopped')
    await expect(c).rejects.toThrow('stopped')
    const d = b.add('ost1', 3)
    expect(calls.at(-1)!.items).toEqual([3])
    calls.at(-1)!.done()
    await expect(d).resolves.toBeUndefined()
  })
})

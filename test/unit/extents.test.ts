import { describe, expect, it } from 'vitest'
import { ExtentMap, type Extent } from '../../src/osc/extents.js'

/**
 * The write-back cache's map of one object against a byte-by-byte model: random writes,
 * takes for RPCs and landings, checking after each what reads would see (overlay), what is
 * cached (covers, end) and how much is dirty.
 */
const SIZE = 16 * 1024

function lcg(seed: number): (n: number) => number {
  let s = seed >>> 0
  return (n) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s % n
  }
}

class Model {
  /** -1: no such byte cached. */
  dirty = new Int16Array(SIZE).fill(-1)
  inflight = new Int16Array(SIZE).fill(-1)
  count(a: Int16Array): number {
    return a.reduce((n, v) => n + (v >= 0 ? 1 : 0), 0)
  }
  view(): Buffer {
    return Buffer.from(Array.from({ length: SIZE }, (_, x) => (this.dirty[x]! >= 0 ? this.dirty[x]! : this.inflight[x]! >= 0 ? this.inflight[x]! : 0)))
  }
}

describe('ExtentMap', () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    it(`agrees with a byte model over random writes, takes and landings (seed ${seed})`, () => {
      const r = lcg(seed)
      const map = new ExtentMap()
      const m = new Model()
      const flying: Extent[] = []
      for (let step = 1; step <= 1500; step++) {
        const op = r(20)
        if (op < 14) {
          const len = 1 + r(op < 7 ? 2048 : 300)
          const off = r(SIZE - len)
          const v = 1 + (step % 250)
          const before = m.count(m.dirty)
          m.dirty.fill(v, off, off + len)
          expect(map.insert(off, Buffer.alloc(len, v), step, step)).toBe(m.count(m.dirty) - before)
        } else if (op < 17) {
          const out = map.take(1 + r(4096), 1 + r(6), (e) => (e.off + step) % 5 !== 0)
          for (const e of out) {
            expect(e.state).toBe('inflight')
            // Only dirty bytes, never over bytes still in flight.
            expect(m.dirty.subarray(e.off, e.off + e.len).every((v) => v >= 0)).toBe(true)
            expect(m.inflight.subarray(e.off, e.off + e.len).every((v) => v === -1)).toBe(true)
            expect(Buffer.concat(e.chunks).equals(Buffer.from(m.dirty.subarray(e.off, e.off + e.len)))).toBe(true)
          }
          for (const e of out) {
            m.inflight.set(m.dirty.subarray(e.off, e.off + e.len), e.off)
            m.dirty.fill(-1, e.off, e.off + e.len)
            flying.push(e)
          }
        } else if (flying.length) {
          const e = flying.splice(r(flying.length), 1)[0]!
          map.remove(e)
          m.inflight.fill(-1, e.off, e.off + e.len)
        }
        expect(map.dirtyBytes).toBe(m.count(m.dirty))
        if (step % 25 === 0 || step > 1450) {
          const view = m.view()
          const buf = Buffer.alloc(SIZE)
          map.overlay(0, buf)
          expect(buf.equals(view)).toBe(true)
          const part = Buffer.alloc(1000)
          const at = r(SIZE - 1000)
          map.overlay(at, part)
          expect(part.equals(view.subarray(at, at + 1000))).toBe(true)
          for (let k = 0; k < 5; k++) {
            const off = r(SIZE - 1)
            const len = 1 + r(Math.min(3000, SIZE - off))
            let all = true
            for (let x = off; x < off + len; x++) if (m.dirty[x]! < 0 && m.inflight[x]! < 0) all = false
            expect(map.covers(off, len)).toBe(all)
          }
          let end = 0
          for (let x = 0; x < SIZE; x++) if (m.dirty[x]! >= 0 || m.inflight[x]! >= 0) end = x + 1
          expect(map.end).toBe(end)
        }
      }
      // Everything sent and landed, rewrites of bytes in flight after them: nothing is left.
      for (let round = 0; !map.empty; round++) {
        expect(round).toBeLessThan(10)
        flying.push(...map.take(SIZE, 1000, () => true))
        for (const e of flying.splice(0)) map.remove(e)
      }
      expect(map.dirtyBytes).toBe(0)
    })
  }

  it('merges adjacent dirty bytes into one run, and a rewrite in the middle keeps one run', () => {
    const map = new ExtentMap()
    for (let off = 0; off < 8 * 4096; off += 4096) map.insert(off, Buffer.alloc(4096, 1), off, off)
    map.insert(5000, Buffer.alloc(100, 2), 99_999, 99_999)
    const runs = map.take(1 << 20, 10, () => true)
    // Aged from its first byte, timed by its newest.
    expect(runs.map((e) => [e.off, e.len, e.since, e.mtime])).toEqual([[0, 8 * 4096, 0, 99_999]])
    expect(Buffer.concat(runs[0]!.chunks).subarray(4990, 5110)).toEqual(Buffer.concat([Buffer.alloc(10, 1), Buffer.alloc(100, 2), Buffer.alloc(10, 1)]))
  })
})

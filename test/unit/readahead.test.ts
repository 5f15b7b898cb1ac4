import { describe, expect, it } from 'vitest'
import { copyFrom, slice, totalLength } from '../../src/common/chunks.js'
import { ReadAheadBudget } from '../../src/llite/rabudget.js'
import { ReadAhead } from '../../src/llite/readahead.js'

const FILE = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 31 + 7) & 0xff))

/** `buf` cut at pseudo-random places, as a socket would deliver it. */
function pieces(buf: Buffer, seed: number): Buffer[] {
  const out: Buffer[] = []
  for (let at = 0; at < buf.length; ) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    const n = Math.min(buf.length - at, 1 + (seed % 3000))
    out.push(buf.subarray(at, at + n))
    at += n
  }
  return out
}

describe('chunk lists', () => {
  const chunks = pieces(FILE.subarray(0, 10_000), 3)

  it('slices any byte range as views of the pieces', () => {
    for (const [from, to] of [[0, 10_000], [0, 1], [17, 9_999], [4_000, 4_000], [9_990, 20_000], [12_000, 13_000]] as const) {
      const s = slice(chunks, from, to)
      expect(Buffer.concat(s).equals(FILE.subarray(Math.min(from, 10_000), Math.min(to, 10_000)))).toBe(true)
      expect(s.every((p) => p.length > 0 && p.buffer === FILE.buffer)).toBe(true)
    }
    expect(totalLength(slice(chunks, 500))).toBe(9_500)
  })

  it('copies a range into a buffer', () => {
    const dst = Buffer.alloc(300, 0xee)
    copyFrom(chunks, dst, 50, 2_990, 3_190)
    expect(dst.subarray(50, 250).equals(FILE.subarray(2_990, 3_190))).toBe(true)
    expect(dst[49]).toBe(0xee)
    expect(dst[250]).toBe(0xee)
  })
})

describe('read-ahead', () => {
  const C = 8192
  function reader(size = FILE.length, budget = new ReadAheadBudget(Infinity)) {
    const fetched: number[] = []
    const ra = new ReadAhead(
      async (off, len) => {
        fetched.push(off)
        return pieces(FILE.subarray(Math.min(off, size), Math.min(off + len, size)), off + 1)
      },
      { chunk: C, maxWindow: 4 * C },
      budget,
      () => size,
    )
    return { ra, fetched }
  }

  it('serves a sequential reader from chunks fetched ahead, across piece and chunk boundaries', async () => {
    const { ra, fetched } = reader()
    const got: Buffer[] = []
    for (let off = 0; off < FILE.length; off += 5000) {
      const r = await ra.read(off, 5000)
      // The first read of a run is not yet sequential: the caller reads it directly.
      got.push(r ? Buffer.concat(r) : FILE.subarray(off, off + 5000))
    }
    expect(Buffer.concat(got).equals(FILE)).toBe(true)
    // Every chunk fetched once, none past the end of the file.
    expect(new Set(fetched).size).toBe(fetched.length)
    expect(Math.max(...fetched)).toBeLessThan(FILE.length)
  })

  it('returns what there is at the end of the file, and nothing for a random read', async () => {
    const { ra } = reader(60_000)
    // A run is served from the window from its third read on.
    expect(await ra.read(40_000, 4000)).toBeNull()
    expect(await ra.read(44_000, 4000)).toBeNull()
    expect(Buffer.concat((await ra.read(48_000, 4000))!).equals(FILE.subarray(48_000, 52_000))).toBe(true)
    expect(Buffer.concat((await ra.read(52_000, 10_000))!).equals(FILE.subarray(52_000, 60_000))).toBe(true)
    expect(await ra.read(5_000, 100)).toBeNull()
  })

  it('fetches again after invalidate', async () => {
    const { ra, fetched } = reader()
    await ra.read(0, 100)
    await ra.read(100, 100)
    const before = fetched.length
    ra.invalidate()
    await ra.read(200, 100)
    expect(await ra.read(300, 100)).not.toBeNull()
    expect(fetched.length).toBeGreaterThan(before)
  })

  it('a read waiting on its chunks still gets its bytes when a read out of sequence drops the window meanwhile', async () => {
    const { ra } = reader()
    await ra.read(0, 100)
    await ra.read(100, 100)
    // Across two chunks; the kernel's next request, far off, arrives while it waits.
    const across = ra.read(C - 500, 1000)
    expect(await ra.read(90_000, 100)).toBeNull()
    ra.invalidate()
    expect(Buffer.concat((await across)!).equals(FILE.subarray(C - 500, C + 500))).toBe(true)
  })

  it('holds no more than the budget across files: a chunk it refuses is read directly, and a closed file gives its chunks back', async () => {
    const budget = new ReadAheadBudget(6 * C)
    const files = [reader(FILE.length, budget), reader(FILE.length, budget), reader(FILE.length, budget)]
    let direct = 0
    for (let off = 0; off < 40_000; off += 4000) {
      for (const { ra } of files) {
        const r = await ra.read(off, 4000)
        if (r) expect(Buffer.concat(r).equals(FILE.subarray(off, off + 4000))).toBe(true)
        else direct += 1
        expect(budget.heldBytes).toBeLessThanOrEqual(6 * C)
      }
    }
    // Unbounded, each file would hold its window of 4 chunks and the 2 behind the reader.
    expect(budget.refused).toBeGreaterThan(0)
    expect(direct).toBeGreaterThan(6)
    expect(files.reduce((n, f) => n + f.fetched.length, 0)).toBeGreaterThan(0)
    for (const { ra } of files) ra.invalidate()
    expect(budget.heldBytes).toBe(0)
  })

  it('gives back the budget of a chunk whose fetch failed', async () => {
    const budget = new ReadAheadBudget(Infinity)
    let fail = true
    const ra = new ReadAhead(
      async (off, len) => {
        if (fail) throw new Error('EIO')
        return [FILE.subarray(off, off + len)]
      },
      { chunk: C, maxWindow: 4 * C },
      budget,
    )
    expect(await ra.read(0, 100)).toBeNull()
    await expect(ra.read(100, 100)).rejects.toThrow('EIO')
    await new Promise((r) => setImmediate(r))
    expect(budget.heldBytes).toBe(0)
    fail = false
    expect(Buffer.concat((await ra.read(300, 100))!).equals(FILE.subarray(300, 400))).toBe(true)
    expect(budget.heldBytes).toBeGreaterThan(0)
  })
})

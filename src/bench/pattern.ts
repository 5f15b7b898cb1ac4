import { prng } from './prng.js'

/**
 * The data the harness writes is a function of (seed, file, offset), so verification
 * regenerates it instead of keeping a copy. Each 4 KiB page starts with its own identity
 * (offset, file id, seed) over a per-seed random base: a page written at the wrong offset,
 * lost (zeros), or left over from another file or an earlier run does not match.
 */
export const PAGE = 4096
const BASE = 1 << 20
const MAGIC = 0x504c // "LP"

export class Pattern {
  private readonly base = Buffer.allocUnsafe(BASE)

  constructor(readonly seed: number) {
    const next = prng(seed)
    for (let i = 0; i < BASE; i += 4) this.base.writeUInt32LE(next(), i)
  }

  /** Fill buf[0, len) with file's data at `offset`; offset and len are multiples of PAGE. */
  fill(buf: Buffer, file: number, offset: number, len = buf.length): Buffer {
    for (let p = 0; p < len; p += PAGE) {
      const at = offset + p
      const src = at % BASE
      this.base.copy(buf, p, src, src + PAGE)
      buf.writeUIntLE(at, p, 6)
      buf.writeUInt16LE(MAGIC, p + 6)
      buf.writeUInt32LE(file >>> 0, p + 8)
      buf.writeUInt32LE(this.seed >>> 0, p + 12)
    }
    return buf
  }

  /**
   * Offsets of the pages of buf (file's data at `offset`, `len` bytes) that differ from what
   * was written. `written(at)` false means the page at `at` was never written: a hole, zeros.
   */
  badPages(buf: Buffer, file: number, offset: number, len: number, scratch: Buffer, written: (at: number) => boolean = () => true): number[] {
    for (let p = 0; p < len; p += PAGE) {
      if (written(offset + p)) this.fill(scratch.subarray(p, p + PAGE), file, offset + p, PAGE)
      else scratch.fill(0, p, p + PAGE)
    }
    if (buf.compare(scratch, 0, len, 0, len) === 0) return []
    const bad: number[] = []
    for (let p = 0; p < len; p += PAGE) if (buf.compare(scratch, p, p + PAGE, p, p + PAGE) !== 0) bad.push(offset + p)
    return bad
  }
}

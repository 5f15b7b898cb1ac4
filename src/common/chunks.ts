/** Data kept in the pieces it arrived in (socket chunks), so that it is never joined. */

export function totalLength(chunks: readonly Uint8Array[]): number {
  let n = 0
  for (const c of chunks) n += c.byteLength
  return n
}

/** The non-empty pieces of `chunks` from byte `off` on, as views (nothing is copied). */
export function sliceFrom(chunks: readonly Buffer[], off: number): Buffer[] {
  const out: Buffer[] = []
  for (const c of chunks) {
    if (off >= c.length) {
      off -= c.length
      continue
    }
    out.push(off ? c.subarray(off) : c)
    off = 0
  }
  return out
}

/** Copy bytes [from, to) of the pieces, taken as one run, into `dst` at `at`. */
export function copyFrom(chunks: readonly Buffer[], dst: Buffer, at: number, from: number, to: number): void {
  for (const c of sliceFrom(chunks, from)) {
    if (from >= to) return
    const n = Math.min(c.length, to - from)
    c.copy(dst, at, 0, n)
    at += n
    from += n
  }
}

/** Data kept in the pieces it arrived in (socket chunks), so that it is never joined. */

export function totalLength(chunks: readonly Uint8Array[]): number {
  let n = 0
  for (const c of chunks) n += c.byteLength
  return n
}

/** The non-empty pieces of bytes [from, to) of `chunks`, taken as one run, as views (nothing is copied). */
export function slice(chunks: readonly Buffer[], from: number, to = Infinity): Buffer[] {
  const out: Buffer[] = []
  let pos = 0
  for (const c of chunks) {
    if (pos >= to) break
    const a = Math.max(from, pos)
    const b = Math.min(to, pos + c.length)
    if (a < b) out.push(a === pos && b === pos + c.length ? c : c.subarray(a - pos, b - pos))
    pos += c.length
  }
  return out
}

/** Copy bytes [from, to) of the pieces, taken as one run, into `dst` at `at`. */
export function copyFrom(chunks: readonly Buffer[], dst: Buffer, at: number, from: number, to: number): void {
  for (const c of slice(chunks, from, to)) at += c.copy(dst, at)
}

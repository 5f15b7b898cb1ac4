import { slice } from '../common/chunks.js'
/**
 * Cached bytes of one object, by object offset: `dirty` extents not sent yet, and extents
 * `inflight` in a write RPC. Dirty extents never overlap each other; a dirty extent may
 * overlap an in-flight one (a rewrite while the first write travels), and is then newer.
 */
export interface Extent {
  off: number
  len: number
  chunks: Buffer[]
  state: 'dirty' | 'inflight'
  /** When it was first dirtied (monotonic ms), for write-back expiry. */
  since: number
  /** The newest writer's wall-clock time among its bytes: the object's mtime once written. */
  mtime: number
}

export class ExtentMap {
  /** Sorted by offset. */
  readonly extents: Extent[] = []

  get empty(): boolean {
    return this.extents.length === 0
  }

  /** Add dirty bytes; older dirty bytes they cover are dropped. Returns the growth in cached bytes. */
  insert(off: number, data: Buffer, now: number, mtime: number): number {
    const end = off + data.length
    let delta = data.length
    const kept: Extent[] = []
    for (const e of this.extents) {
      const eEnd = e.off + e.len
      if (e.state === 'inflight' || eEnd <= off || e.off >= end) {
        kept.push(e)
        continue
      }
      delta -= Math.min(eEnd, end) - Math.max(e.off, off)
      if (e.off < off) kept.push(sliceExtent(e, e.off, off))
      if (eEnd > end) kept.push(sliceExtent(e, end, eEnd))
    }
    kept.push({ off, len: data.length, chunks: [data], state: 'dirty', since: now, mtime })
    kept.sort((a, b) => a.off - b.off || (a.state === 'inflight' ? -1 : 1))
    this.extents.splice(0, this.extents.length, ...mergeDirty(kept))
    return delta
  }

  /**
   * Take the first sendable dirty run (up to `max` bytes) as in flight: one that does not
   * overlap an in-flight extent, which must land first. `force`: also partial runs.
   */
  take(max: number, ready: (e: Extent) => boolean): Extent | null {
    for (let i = 0; i < this.extents.length; i++) {
      const e = this.extents[i]!
      if (e.state !== 'dirty' || !ready(e)) continue
      if (this.extents.some((x) => x.state === 'inflight' && x.off < e.off + e.len && e.off < x.off + x.len)) continue
      if (e.len > max) {
        const head = sliceExtent(e, e.off, e.off + max)
        const tail = sliceExtent(e, e.off + max, e.off + e.len)
        head.state = 'inflight'
        this.extents.splice(i, 1, head, tail)
        return head
      }
      e.state = 'inflight'
      return e
    }
    return null
  }

  remove(e: Extent): void {
    const i = this.extents.indexOf(e)
    if (i >= 0) this.extents.splice(i, 1)
  }

  /** Copy cached bytes over `buf` (which holds the object's bytes from `off`): newest last. */
  overlay(off: number, buf: Buffer): void {
    const end = off + buf.length
    for (const state of ['inflight', 'dirty'] as const)
      for (const e of this.extents) {
        if (e.state !== state || e.off >= end || e.off + e.len <= off) continue
        let pos = e.off
        for (const c of e.chunks) {
          const from = Math.max(pos, off)
          const to = Math.min(pos + c.length, end)
          if (from < to) c.copy(buf, from - off, from - pos, to - pos)
          pos += c.length
        }
      }
  }

  /** Bytes of [off, off+len) covered by cached data (to tell a hole from missing data). */
  covers(off: number, len: number): boolean {
    let pos = off
    const end = off + len
    for (const e of [...this.extents].sort((a, b) => a.off - b.off)) {
      if (e.off > pos) break
      pos = Math.max(pos, e.off + e.len)
      if (pos >= end) return true
    }
    return pos >= end
  }

  get end(): number {
    return this.extents.reduce((m, e) => Math.max(m, e.off + e.len), 0)
  }

  get dirtyBytes(): number {
    return this.extents.reduce((n, e) => n + (e.state === 'dirty' ? e.len : 0), 0)
  }
}

/** The bytes [from, to) of an extent, as a new extent of the same state and age. */
function sliceExtent(e: Extent, from: number, to: number): Extent {
  return { off: from, len: to - from, chunks: slice(e.chunks, from - e.off, to - e.off), state: e.state, since: e.since, mtime: e.mtime }
}

/** Merge adjacent dirty extents into runs (contiguous writes become one RPC). */
function mergeDirty(list: Extent[]): Extent[] {
  const out: Extent[] = []
  for (const e of list) {
    const prev = out.length ? out[out.length - 1]! : null
    if (prev && prev.state === 'dirty' && e.state === 'dirty' && prev.off + prev.len === e.off) {
      prev.chunks.push(...e.chunks)
      prev.len += e.len
      prev.since = Math.min(prev.since, e.since)
      prev.mtime = Math.max(prev.mtime, e.mtime)
    } else out.push(e.state === 'dirty' ? { ...e, chunks: [...e.chunks] } : e)
  }
  return out
}

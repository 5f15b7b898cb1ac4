import { slice } from '../common/chunks.js'
/**
 * Cached bytes of one object, by object offset: `dirty` runs not sent yet, and runs
 * `inflight` in a write RPC. Each kind is kept sorted and never overlaps itself, so a write
 * finds what it touches by binary search (a random writer keeps thousands of runs). Adjacent
 * dirty runs merge. A dirty run may overlap an in-flight one (a rewrite while the first write
 * travels), and is then newer: it is not sent until that one has landed.
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
  private dirty: Extent[] = []
  private readonly inflight: Extent[] = []
  /** Bytes in dirty runs. */
  dirtyBytes = 0

  get empty(): boolean {
    return this.dirty.length === 0 && this.inflight.length === 0
  }

  /** Add dirty bytes; older dirty bytes they cover are dropped. Returns the growth in cached bytes. */
  insert(off: number, data: Buffer, now: number, mtime: number): number {
    if (!data.length) return 0
    const end = off + data.length
    const d = this.dirty
    // Dirty runs [i, j) overlap the new bytes; d[i - 1] may end where they start, d[j] start where they end.
    const i = firstEndingAfter(d, off)
    let j = i
    let covered = 0
    for (; j < d.length && d[j]!.off < end; j++) covered += Math.min(d[j]!.off + d[j]!.len, end) - Math.max(d[j]!.off, off)
    const lo = i > 0 && d[i - 1]!.off + d[i - 1]!.len === off ? i - 1 : i
    const hi = j < d.length && d[j]!.off === end ? j + 1 : j
    const fresh: Extent = { off, len: data.length, chunks: [data], state: 'dirty', since: now, mtime }
    // A neighbour that ends where the new bytes start grows in place (a sequential writer's run).
    const head = lo < i ? d[lo]! : lo < hi && d[lo]!.off < off ? sliceExtent(d[lo]!, d[lo]!.off, off) : null
    const last = lo < hi ? d[hi - 1]! : null
    const tail = last && last.off + last.len > end ? sliceExtent(last, end, last.off + last.len) : null
    const run = head ? join(head, fresh) : fresh
    d.splice(lo, hi - lo, tail ? join(run, tail) : run)
    const delta = data.length - covered
    this.dirtyBytes += delta
    return delta
  }

  /**
   * Take sendable dirty runs as in flight, in order of offset, for one RPC: up to `max` bytes
   * in at most `maxRuns` runs (a run longer than what is left is cut). A run that overlaps an
   * in-flight one is not sendable: that one must land first. Empty when none is ready.
   */
  take(max: number, maxRuns: number, ready: (e: Extent) => boolean): Extent[] {
    const out: Extent[] = []
    // What stays dirty, built only once something is taken (most calls take nothing).
    let left: Extent[] | null = null
    let bytes = 0
    // Called on every write: a plain loop over what may be thousands of runs.
    for (let k = 0; k < this.dirty.length; k++) {
      const e = this.dirty[k]!
      if (bytes >= max || out.length >= maxRuns || !ready(e) || this.overlapsInflight(e)) {
        left?.push(e)
        continue
      }
      left ??= this.dirty.slice(0, k)
      const room = max - bytes
      const sent = e.len > room ? sliceExtent(e, e.off, e.off + room) : e
      if (sent !== e) left.push(sliceExtent(e, e.off + room, e.off + e.len))
      sent.state = 'inflight'
      out.push(sent)
      bytes += sent.len
    }
    if (!left) return out
    this.dirty = left
    this.dirtyBytes -= bytes
    for (const e of out) this.inflight.splice(firstEndingAfter(this.inflight, e.off), 0, e)
    return out
  }

  private overlapsInflight(e: Extent): boolean {
    const k = firstEndingAfter(this.inflight, e.off)
    return k < this.inflight.length && this.inflight[k]!.off < e.off + e.len
  }

  /** An in-flight run has landed (or failed). */
  remove(e: Extent): void {
    const k = this.inflight.indexOf(e, firstEndingAfter(this.inflight, e.off))
    if (k >= 0) this.inflight.splice(k, 1)
  }

  /** Drop every dirty run (their target is gone); returns their bytes. */
  dropDirty(): number {
    const n = this.dirtyBytes
    this.dirty = []
    this.dirtyBytes = 0
    return n
  }

  /** Copy cached bytes over `buf` (which holds the object's bytes from `off`): newest last. */
  overlay(off: number, buf: Buffer): void {
    const end = off + buf.length
    for (const list of [this.inflight, this.dirty])
      for (let k = firstEndingAfter(list, off); k < list.length && list[k]!.off < end; k++) {
        const e = list[k]!
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
    const end = off + len
    const near: Extent[] = []
    for (const list of [this.inflight, this.dirty])
      for (let k = firstEndingAfter(list, off); k < list.length && list[k]!.off < end; k++) near.push(list[k]!)
    let pos = off
    for (const e of near.sort((a, b) => a.off - b.off)) {
      if (e.off > pos) break
      pos = Math.max(pos, e.off + e.len)
    }
    return pos >= end
  }

  get end(): number {
    const last = (l: Extent[]) => (l.length ? l[l.length - 1]!.off + l[l.length - 1]!.len : 0)
    return Math.max(last(this.dirty), last(this.inflight))
  }
}

/** The first run of a sorted list of runs that do not overlap that ends after `off` (their ends ascend too). */
function firstEndingAfter(list: readonly Extent[], off: number): number {
  let lo = 0
  let hi = list.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (list[mid]!.off + list[mid]!.len > off) hi = mid
    else lo = mid + 1
  }
  return lo
}

/** The bytes [from, to) of an extent, as a new extent of the same state and age. */
function sliceExtent(e: Extent, from: number, to: number): Extent {
  return { off: from, len: to - from, chunks: slice(e.chunks, from - e.off, to - e.off), state: e.state, since: e.since, mtime: e.mtime }
}

/** Two adjacent dirty runs as one: `a` grows in place. */
function join(a: Extent, b: Extent): Extent {
  a.chunks.push(...b.chunks)
  a.len += b.len
  a.since = Math.min(a.since, b.since)
  a.mtime = Math.max(a.mtime, b.mtime)
  return a
}

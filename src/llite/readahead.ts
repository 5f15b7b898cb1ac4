import { slice, totalLength } from '../common/chunks.js'
import type { ReadAheadBudget } from './rabudget.js'

/**
 * Read-ahead of one open file (Lustre's llite read-ahead, in its essentials): once reads
 * are sequential, a window of chunk-sized reads runs ahead of the reader, doubling up to
 * the per-file maximum; a random read drops it. Chunks hold what the file had when read:
 * writes through this client drop them (other clients' writes are seen at the next open).
 * Every chunk held, or being fetched, has its bytes reserved in the mount's budget; a chunk
 * the budget refuses is not read ahead, and a read that needs it is read directly.
 */
export interface ReadAheadTunables {
  /** Bytes per read-ahead RPC (a stripe-aligned chunk). */
  chunk: number
  /** Largest window per file (max_read_ahead_per_file_mb). */
  maxWindow: number
}

/** Reads [off, off+len) of the file, in pieces: shorter at the end of the file. */
export type Fetch = (off: number, len: number) => Promise<Buffer[]>

export class ReadAhead {
  /** End of the furthest read of the current sequential run. */
  private end = 0
  private streak = 0
  private window = 0
  private readonly chunks = new Map<number, Promise<Buffer[]>>()

  constructor(
    private readonly fetch: Fetch,
    private readonly tun: ReadAheadTunables,
    private readonly budget: ReadAheadBudget,
    /** Where the file is known to end: no chunk is read ahead from there on. */
    private readonly limit: () => number = () => Infinity,
  ) {}

  /** Bytes of [off, off+len) from the window (as views of the chunks), or null: not sequential, read it directly. */
  async read(off: number, len: number): Promise<Buffer[] | null> {
    const C = this.tun.chunk
    // The kernel sends its own read-ahead requests concurrently, so a sequential reader's
    // requests arrive out of order, by as much as the kernel's window (MiBs, many chunks of a
    // small stripe): near the run's end, or within our own window of it, still counts.
    if (Math.abs(off - this.end) > Math.max(2 * C, this.window)) {
      this.streak = 0
      this.window = 0
      this.dropAll()
      this.end = off + len
      return null
    }
    this.end = Math.max(this.end, off + len)
    if (++this.streak < 2) return null
    this.window = Math.min(this.tun.maxWindow, Math.max(this.window * 2, 4 * C))
    const first = Math.floor(off / C) * C
    for (const start of this.chunks.keys()) if (start + C <= off - 2 * C) this.drop(start)
    const stop = Math.max(off + len, Math.min(this.end + this.window, this.limit()))
    for (let c = first; c < stop; c += C) if (!this.chunks.has(c) && !this.load(c)) break
    // Taken before waiting: a concurrent read out of sequence clears the window meanwhile.
    const needed: Array<[number, Promise<Buffer[]>]> = []
    for (let c = first; c < off + len; c += C) {
      const chunk = this.chunks.get(c)
      if (!chunk) return null
      needed.push([c, chunk])
    }
    const parts: Buffer[] = []
    for (const [c, chunk] of needed) {
      const data = await chunk
      const from = Math.max(off, c) - c
      const to = Math.min(off + len, c + C) - c
      parts.push(...slice(data, from, to))
      if (totalLength(data) < to) break // the end of the file
    }
    return parts
  }

  /** Fetch the chunk at `start`, if the budget has room for it. */
  private load(start: number): boolean {
    if (!this.budget.take(this.tun.chunk)) return false
    const p = this.fetch(start, this.tun.chunk)
    this.chunks.set(start, p)
    // A failed chunk is fetched again by the next read that needs it; nobody may be waiting now.
    p.catch(() => {
      if (this.chunks.get(start) === p) this.drop(start)
    })
    return true
  }

  private drop(start: number): void {
    if (this.chunks.delete(start)) this.budget.give(this.tun.chunk)
  }

  private dropAll(): void {
    this.budget.give(this.chunks.size * this.tun.chunk)
    this.chunks.clear()
  }

  /** The file changed under us (what was read ahead is stale), or its handle is closed. */
  invalidate(): void {
    this.dropAll()
    this.window = 0
    this.streak = 0
  }
}

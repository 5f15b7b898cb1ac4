import { AUTH_WINDOW_MS } from '../protocol/auth.js'

/**
 * The nonces of the requests accepted within the time window, so a captured request sent
 * again is refused. Bounded: past `cap` nonces the oldest is forgotten and the floor rises to
 * its timestamp, so a request signed at or before the floor is refused as too old: nothing
 * forgotten can come back, and under a flood the window only narrows.
 */
export const MAX_NONCES = 200_000
/**
 * Expired nonces are dropped at most this often. A Map deleted from its front keeps the holes
 * until it rehashes, and each sweep walked them again: 2% of an MDS's time under small RPCs.
 * Kept a second longer, a nonce costs memory, never a refusal: the guard refuses its timestamp.
 */
const EXPIRE_EVERY_MS = 1000

export class NonceCache {
  /** Insertion order, nearly time order (clients' clocks differ a little). */
  private readonly seen = new Map<string, number>()
  private floor = -Infinity
  private nextExpiry = -Infinity

  constructor(private readonly cap = MAX_NONCES) {}

  /** Remember `nonce`; false if it was seen, or is too old to be told apart from a forgotten one. */
  admit(nonce: string, ts: number, now: number): boolean {
    this.expire(now)
    if (ts <= this.floor || this.seen.has(nonce)) return false
    this.seen.set(nonce, ts)
    if (this.seen.size > this.cap) this.forgetOldest()
    return true
  }

  get size(): number {
    return this.seen.size
  }

  /** Nonces from before the window need no memory: their timestamps are refused anyway. */
  private expire(now: number): void {
    if (now < this.nextExpiry) return
    this.nextExpiry = now + EXPIRE_EVERY_MS
    const limit = now - AUTH_WINDOW_MS
    for (const [nonce, ts] of this.seen) {
      if (ts >= limit) break
      this.seen.delete(nonce)
    }
    this.floor = Math.max(this.floor, limit)
  }

  private forgetOldest(): void {
    const first = this.seen.entries().next()
    if (first.done) return
    const [nonce, ts] = first.value
    this.seen.delete(nonce)
    this.floor = Math.max(this.floor, ts)
  }
}

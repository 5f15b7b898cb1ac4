import { AUTH_WINDOW_MS } from '../protocol/auth.js'

/**
 * The nonces of the requests accepted within the time window, so a captured request sent
 * again is refused. Bounded: past `cap` nonces the oldest is forgotten and the floor rises to
 * its timestamp, so a request signed at or before the floor is refused as too old: nothing
 * forgotten can come back, and under a flood the window only narrows.
 */
export const MAX_NONCES = 200_000

export class NonceCache {
  /** Insertion order, nearly time order (clients' clocks differ a little). */
  private readonly seen = new Map<string, number>()
  private floor = -Infinity

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

/**
 * Time is injected so that state machines (imports, recovery windows, MMP) can be
 * driven by tests without real waiting.
 */
export interface Timer {
  cancel(): void
}

export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number
  /** Wall-clock milliseconds since the epoch, for display and on-disk stamps. */
  wallNow(): number
  setTimeout(fn: () => void, ms: number): Timer
  sleep(ms: number, signal?: AbortSignal): Promise<void>
}

export const realClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
  wallNow: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms)
    t.unref?.()
    return { cancel: () => clearTimeout(t) }
  },
  sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason)
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }, ms)
      const onAbort = () => {
        clearTimeout(t)
        reject(signal!.reason)
      }
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  },
}

interface Pending {
  at: number
  seq: number
  fn: () => void
  cancelled: boolean
}

/** A clock that only moves when told to; timers fire in time order. */
export class ManualClock implements Clock {
  private t = 0
  private seq = 0
  private pending: Pending[] = []

  constructor(private wallBase = 1_700_000_000_000) {}

  now(): number {
    return this.t
  }

  wallNow(): number {
    return this.wallBase + this.t
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const p: Pending = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, cancelled: false }
    this.pending.push(p)
    return { cancel: () => void (p.cancelled = true) }
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason)
      const timer = this.setTimeout(resolve, ms)
      signal?.addEventListener('abort', () => {
        timer.cancel()
        reject(signal.reason)
      }, { once: true })
    })
  }

  /** Advance time by ms, firing due timers in order and letting promise callbacks run between them. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms
    for (;;) {
      await flushMicrotasks()
      const next = this.pending
        .filter((p) => !p.cancelled && p.at <= end)
        .sort((a, b) => a.at - b.at || a.seq - b.seq)[0]
      if (!next) break
      this.pending.splice(this.pending.indexOf(next), 1)
      this.t = next.at
      next.fn()
    }
    this.t = end
    this.pending = this.pending.filter((p) => !p.cancelled)
    await flushMicrotasks()
  }
}

async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve()
  await new Promise<void>((r) => setImmediate(r))
}

import type { Clock, Timer } from '../../common/clock.js'
import type { Logger } from '../../common/log.js'

/**
 * Server-side recovery of one target (Lustre's target recovery, with 1.8's version-based
 * recovery): the clients in last_rcvd are known; the window opens at the first reconnect and
 * is extended by every reconnect and replay, never past the hard limit; replays run strictly
 * in transno order across clients, skipping a gap only once every client still expected has a
 * request queued. At the end of the (soft) window the clients that never reconnected are
 * evicted; those that did go on replaying past the gaps they leave (the backend checks each
 * replay's versions) until they are done or the hard limit evicts them. It ends when every
 * known client is done or evicted.
 */
export type RecoveryStatus = 'INACTIVE' | 'WAITING_FOR_CLIENTS' | 'RECOVERING' | 'COMPLETE'

export interface RecoveryOptions {
  clock: Clock
  log: Logger
  target: string
  known: string[]
  lastCommitted: number
  softMs: number
  hardMs: number
  imperative: boolean
  /** The target drops these clients' exports and last_rcvd slots. */
  evict: (uuid: string, why: string) => void
}

interface Queued {
  transno: number
  run: () => void
  /** The client was evicted before its turn: fail the request. */
  cancel: () => void
}

export interface RecoveryStatusView {
  status: RecoveryStatus
  recovery_start?: number
  recovery_duration?: number
  time_remaining?: number
  connected_clients: string
  req_replay_clients: number
  completed_clients: string
  evicted_clients: number
  replayed_requests: number
  queued_requests: number
  /** Version-based recovery: replays executed past a transno gap, on their versions' word. */
  vbr_replayed: number
  /** Replays refused on a version mismatch (each evicted its client, Lustre's stale clients). */
  vbr_failed: number
  next_transno: number
  last_transno: number
  VBR: 'ENABLED'
  IR: 'ENABLED' | 'DISABLED'
  clients?: Array<{ uuid: string; state: string }>
}

export class Recovery {
  status: RecoveryStatus
  private readonly known: Set<string>
  private readonly connected = new Set<string>()
  private readonly done = new Set<string>()
  private readonly evicted = new Set<string>()
  private readonly queue = new Map<string, Queued>()
  private nextTransno: number
  private lastReplayed: number
  private replayed = 0
  /** A gap was skipped: what replays from now on rely on versions, not on transno order. */
  private gapped = false
  private vbrReplayed = 0
  private vbrFailed = 0
  /** The soft window is over: whoever is still expected replays until the hard limit. */
  private softOver = false
  private startedAt = 0
  private startedWall = 0
  private endedAt = 0
  private deadline = 0
  private timer: Timer | null = null
  private waiters: Array<() => void> = []

  constructor(private readonly o: RecoveryOptions) {
    this.known = new Set(o.known)
    this.nextTransno = o.lastCommitted + 1
    this.lastReplayed = o.lastCommitted
    if (this.known.size === 0) {
      this.status = 'INACTIVE'
      return
    }
    this.status = 'WAITING_FOR_CLIENTS'
    o.log.info({ target: o.target, clients: this.known.size }, `${o.target}: Will be in recovery for at least ${fmt(o.softMs)}, or until ${this.known.size} client${this.known.size > 1 ? 's' : ''} reconnect`)
    // If no known client ever comes back, do not refuse new clients forever.
    this.timer = o.clock.setTimeout(() => {
      if (this.status === 'WAITING_FOR_CLIENTS') this.expire('no client reconnected', true)
    }, o.softMs)
  }

  get active(): boolean {
    return this.status === 'WAITING_FOR_CLIENTS' || this.status === 'RECOVERING'
  }

  isKnown(uuid: string): boolean {
    return this.known.has(uuid) && !this.evicted.has(uuid)
  }

  private now(): number {
    return this.o.clock.now()
  }

  private extend(): void {
    if (this.softOver) return
    const hardEnd = this.startedAt + this.o.hardMs
    this.deadline = Math.min(hardEnd, Math.max(this.deadline, this.now() + this.o.softMs))
    this.arm('recovery window expired', this.deadline >= hardEnd)
  }

  private arm(why: string, hard: boolean): void {
    this.timer?.cancel()
    this.timer = this.o.clock.setTimeout(() => this.expire(why, hard), this.deadline - this.now())
  }

  /** A known client reconnected. */
  connect(uuid: string): void {
    if (this.status === 'WAITING_FOR_CLIENTS') {
      this.status = 'RECOVERING'
      this.startedAt = this.now()
      this.startedWall = this.o.clock.wallNow()
      this.deadline = this.startedAt
    }
    this.connected.add(uuid)
    this.extend()
  }

  /**
   * Queue a replay; `run` executes it (synchronously) when its turn comes. A replay whose
   * transno already went by (a client that came late) runs at once. One queued replay per
   * client: clients replay one request at a time (SEMANTICS 4), which the gap rule relies on.
   * One queued already is from the client's connection before (it reconnected and replays
   * anew): it is cancelled, so that its request is answered and lets go of what it holds.
   */
  replay(uuid: string, transno: number, run: () => void, cancel: () => void): void {
    if (transno < this.nextTransno) {
      this.replayed += 1
      run()
      return
    }
    this.unqueue(uuid)
    this.queue.set(uuid, { transno, run, cancel })
    this.extend()
    this.process()
  }

  private process(): void {
    for (;;) {
      let next: [string, Queued] | undefined
      for (const e of this.queue) if (e[1].transno === this.nextTransno) next = e
      if (!next) {
        // A known client that has not reconnected yet may hold the missing transno too.
        const replaying = [...this.known].filter((c) => !this.done.has(c) && !this.evicted.has(c)).length
        if (this.queue.size === 0 || this.queue.size < replaying) return
        // Every client still replaying waits on us: the missing transnos will never come.
        const lowest = Math.min(...[...this.queue.values()].map((q) => q.transno))
        this.o.log.info({ target: this.o.target, from: this.nextTransno, to: lowest }, 'recovery: skipping transno gap')
        this.nextTransno = lowest
        this.gapped = true
        continue
      }
      this.queue.delete(next[0])
      this.nextTransno = next[1].transno + 1
      this.lastReplayed = next[1].transno
      this.replayed += 1
      next[1].run()
    }
  }

  /** The target ran a replay: it succeeded, or failed (on a version mismatch when `vbr`). */
  outcome(ok: boolean, vbr = false): void {
    if (ok && this.gapped) this.vbrReplayed += 1
    if (!ok && vbr) this.vbrFailed += 1
  }

  /** The client has replayed everything it had; resolves once recovery is over. */
  replayDone(uuid: string): Promise<void> {
    this.done.add(uuid)
    this.unqueue(uuid)
    const p = this.whenComplete()
    this.process()
    this.checkComplete()
    return p
  }

  whenComplete(): Promise<void> {
    if (!this.active) return Promise.resolve()
    return new Promise((resolve) => this.waiters.push(resolve))
  }

  /** The target evicted this client (e.g. its replay was rejected). */
  dropped(uuid: string): void {
    if (!this.known.has(uuid)) return
    this.evicted.add(uuid)
    this.unqueue(uuid)
    this.process()
    this.checkComplete()
  }

  private unqueue(uuid: string): void {
    const q = this.queue.get(uuid)
    this.queue.delete(uuid)
    q?.cancel()
  }

  private checkComplete(): void {
    if (!this.active) return
    for (const c of this.known) if (!this.done.has(c) && !this.evicted.has(c)) return
    this.complete()
  }

  /**
   * The window is over. At the hard limit (or on abort) whoever is not done goes; at the end
   * of the soft window only the clients that never reconnected go, and the connected ones go
   * on replaying past the gaps those leave, their versions checked, until the hard limit.
   */
  private expire(why: string, hard: boolean): void {
    if (!this.active) return
    const unfinished = [...this.known].filter((c) => !this.done.has(c) && !this.evicted.has(c))
    const stale = hard ? unfinished : unfinished.filter((c) => !this.connected.has(c))
    const staying = unfinished.length - stale.length
    const what = hard ? 'did not finish recovery' : 'never reconnected'
    this.o.log.warn(
      { target: this.o.target, evicting: stale, replaying: staying },
      `${this.o.target}: ${why}, evicting ${stale.length} client(s) that ${what}` + (staying ? `; ${staying} still replaying until the hard limit` : ''),
    )
    if (staying) {
      this.softOver = true
      this.deadline = this.startedAt + this.o.hardMs
      this.arm('recovery hard limit reached', true)
    }
    // All of them first: evicting one must not let a replay of another one run.
    for (const c of stale) {
      this.evicted.add(c)
      this.unqueue(c)
    }
    for (const c of stale) this.o.evict(c, why)
    if (!staying) this.complete()
    else {
      this.process()
      this.checkComplete()
    }
  }

  abort(): void {
    this.expire('recovery aborted by the administrator', true)
  }

  private complete(): void {
    if (this.status === 'COMPLETE') return
    this.timer?.cancel()
    if (this.status === 'WAITING_FOR_CLIENTS') {
      this.startedAt = this.now()
      this.startedWall = this.o.clock.wallNow()
    }
    this.status = 'COMPLETE'
    this.endedAt = this.now()
    const recovered = [...this.known].filter((c) => this.done.has(c) && !this.evicted.has(c)).length
    const evicted = [...this.known].filter((c) => this.evicted.has(c)).length
    this.o.log.info(
      { target: this.o.target, recovered, evicted, replayed: this.replayed },
      `${this.o.target}: Recovery over after ${fmt(this.endedAt - this.startedAt)}, of ${this.known.size} clients ${recovered} recovered and ${evicted} were evicted.`,
    )
    for (const w of this.waiters.splice(0)) w()
  }

  /** Stop timers (target stopping); pending waiters are released so they can fail. */
  close(): void {
    this.timer?.cancel()
    for (const uuid of [...this.queue.keys()]) this.unqueue(uuid)
    for (const w of this.waiters.splice(0)) w()
  }

  view(lastTransno: number): RecoveryStatusView {
    const v: RecoveryStatusView = {
      status: this.status,
      connected_clients: `${this.connected.size}/${this.known.size}`,
      req_replay_clients: [...this.connected].filter((c) => !this.done.has(c) && !this.evicted.has(c)).length,
      completed_clients: `${[...this.done].filter((c) => !this.evicted.has(c)).length}/${this.known.size}`,
      evicted_clients: this.evicted.size,
      replayed_requests: this.replayed,
      queued_requests: this.queue.size,
      vbr_replayed: this.vbrReplayed,
      vbr_failed: this.vbrFailed,
      next_transno: this.nextTransno,
      last_transno: Math.max(lastTransno, this.lastReplayed),
      VBR: 'ENABLED',
      IR: this.o.imperative ? 'ENABLED' : 'DISABLED',
      clients: [...this.known].map((uuid) => ({
        uuid,
        state: this.evicted.has(uuid) ? 'evicted' : this.done.has(uuid) ? 'recovered' : this.connected.has(uuid) ? 'replaying' : 'waiting',
      })),
    }
    if (this.status === 'RECOVERING') {
      v.recovery_start = Math.floor(this.startedWall / 1000)
      v.time_remaining = Math.max(0, Math.round((this.deadline - this.now()) / 1000))
    } else if (this.status === 'COMPLETE') {
      v.recovery_start = Math.floor(this.startedWall / 1000)
      v.recovery_duration = Math.round((this.endedAt - this.startedAt) / 1000)
    }
    return v
  }
}

function fmt(ms: number): string {
  const s = Math.round(ms / 1000)
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
}

import type net from 'node:net'
import type { Clock, Timer } from '../common/clock.js'
import type { Logger } from '../common/log.js'
import { BadRequest } from './admit.js'

/**
 * The bounds of a node's front (front.ts), on both transports: how long a request may take to
 * arrive, how long a connection may sit idle, how many connections a node and one peer address
 * may hold, how many requests one export may have at its target. A peer past a bound is
 * refused or dropped and its resources freed; a well-behaved lproxy client never meets one.
 */
export interface FrontLimits {
  /**
   * A new connection's first byte, and a request head (HTTP headers; a binary message's fixed
   * header and strings) from its first byte, arrive within this.
   */
  headMs: number
  /** A body keeps at least this average rate past the head's grace (see bodyDeadlineMs). */
  minBodyBytesPerSec: number
  /** A connection with no request under way and none in flight is closed after this. */
  idleMs: number
  maxConns: number
  maxConnsPerPeer: number
  /** Requests of one client at one target at a time (received, not yet answered). */
  maxInflightPerExport: number
}

/**
 * obd_timeout when no target is mounted yet (Lustre's default). A head is a few hundred bytes a
 * client writes at once: one not in after obd_timeout, the client's own deadline for the whole
 * RPC (ptlrpc/tunables.ts), comes from a peer holding the connection, not from a slow network.
 */
const DEFAULT_OBD_TIMEOUT_MS = 100_000
/**
 * A trickled body (slowloris) is dropped once it falls below this rate: the largest RPC
 * (MAX_IO, 64 MiB) then has 256 s past the head's grace, while a peer sending a few bytes a
 * second is dropped after about obd_timeout.
 */
const MIN_BODY_RATE = 256 * 1024
/**
 * An idle import still pings every obd_timeout/4 on its ctl lane, and HTTP clients close an
 * idle socket after 4 s (lnd-http.ts): a connection quiet this long is held by nobody.
 */
const IDLE_MS = 300_000
/**
 * Far above what clients hold: a mount opens at most 18 connections per import (16 io and 2 ctl
 * over HTTP, 4 and 2 over tcp), so 1024 from one address is some 50 imports of this node's
 * targets, several mounts behind one NAT included; 8192 a node keeps well below the usual
 * open-file limits, so a flood of connections cannot starve the targets' own files.
 */
const MAX_CONNS = 8192
const MAX_CONNS_PER_PEER = 1024
/**
 * Twice what a well-behaved client can have at one target: the kernel lets FUSE have 4096
 * background reads outstanding (fuse/fusectl.ts's MAX_BACKGROUND), writeback at most 256
 * RPCs (max_rpcs_in_flight's upper bound), plus the metadata calls of its threads. Past it
 * the peer is not an lproxy client; a refusal (503, "not now") makes a client resend.
 */
const MAX_INFLIGHT_PER_EXPORT = 8192
/** A refused peer is logged once per this, with the count refused meanwhile, not once per connection. */
const REFUSAL_LOG_MS = 60_000

/** The front's bounds for a filesystem of this obd_timeout (sys.timeout), tests' overrides last. */
export function frontLimits(obdTimeoutMs = DEFAULT_OBD_TIMEOUT_MS, over: Partial<FrontLimits> = {}): FrontLimits {
  return {
    headMs: obdTimeoutMs,
    minBodyBytesPerSec: MIN_BODY_RATE,
    idleMs: IDLE_MS,
    maxConns: MAX_CONNS,
    maxConnsPerPeer: MAX_CONNS_PER_PEER,
    maxInflightPerExport: MAX_INFLIGHT_PER_EXPORT,
    ...over,
  }
}

/** How long a request of `declared` body bytes may take from its first byte to its last. */
export function bodyDeadlineMs(l: FrontLimits, declared: number): number {
  return l.headMs + (declared * 1000) / l.minBodyBytesPerSec
}

/** Logs a refusal once per key per interval, with how many were refused since the last line. */
class RefusalLog {
  private readonly last = new Map<string, { at: number; count: number }>()

  constructor(
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  note(key: string, msg: (count: number) => string): void {
    const now = this.clock.now()
    const e = this.last.get(key)
    if (e && now - e.at < REFUSAL_LOG_MS) return void e.count++
    // Peers that stopped being refused are forgotten, so the map stays as small as the attack.
    for (const [k, v] of this.last) if (now - v.at >= REFUSAL_LOG_MS) this.last.delete(k)
    this.log.warn({ peer: key }, msg((e?.count ?? 0) + 1))
    this.last.set(key, { at: now, count: 0 })
  }
}

/** Counts by key, refusals logged once per key per interval: what both caps share. */
abstract class Counted {
  private readonly counts = new Map<string, number>()
  protected readonly refusals: RefusalLog

  constructor(
    protected readonly limits: FrontLimits,
    clock: Clock,
    log: Logger,
  ) {
    this.refusals = new RefusalLog(clock, log)
  }

  protected count(key: string): number {
    return this.counts.get(key) ?? 0
  }

  /** Count one for `key`; the returned function uncounts it. */
  protected take(key: string): () => void {
    this.counts.set(key, this.count(key) + 1)
    return () => {
      const left = this.count(key) - 1
      if (left) this.counts.set(key, left)
      else this.counts.delete(key)
    }
  }
}

/** Counts a node's connections, in total and per peer address; refuses those past the caps. */
export class ConnGate extends Counted {
  private total = 0

  /** Count `sock` until it closes, or false (it is to be closed at once) when a cap is reached. */
  admit(sock: net.Socket): boolean {
    const peer = (sock.remoteAddress ?? '?').replace(/^::ffff:/, '')
    const mine = this.count(peer)
    const l = this.limits
    const full = this.total >= l.maxConns ? `the node holds ${this.total} connections (cap ${l.maxConns})` : mine >= l.maxConnsPerPeer ? `${peer} holds ${mine} connections (cap ${l.maxConnsPerPeer})` : null
    if (full) {
      this.refusals.note(peer, (n) => `refusing connections from ${peer}: ${full}; ${n} refused in the last ${REFUSAL_LOG_MS / 1000} s`)
      return false
    }
    this.total++
    const release = this.take(peer)
    sock.once('close', () => {
      this.total--
      release()
    })
    return true
  }
}

/** Requests in flight per export (target and client), capped. */
export class InflightCap extends Counted {
  /** Count one request of the export; the returned function uncounts it. Throws 503 EAGAIN past the cap. */
  enter(target: string, client: string): () => void {
    const key = `${target} ${client}`
    const n = this.count(key)
    const cap = this.limits.maxInflightPerExport
    if (n >= cap) {
      const msg = `client ${client} has ${n} requests in flight at ${target} (cap ${cap})`
      this.refusals.note(key, (k) => `refusing requests: ${msg}; ${k} refused in the last ${REFUSAL_LOG_MS / 1000} s`)
      throw new BadRequest(503, 'EAGAIN', `${msg}: try again`)
    }
    return this.take(key)
  }
}

/**
 * One connection's deadline, whichever phase it is in: idle (nothing under way, nothing in
 * flight), a request arriving (its head, then its body sized from its declared length), or
 * busy (requests at the targets: no deadline). One timer per connection, re-armed lazily:
 * a deadline that moves later costs no timer call, so a stream of small requests stays cheap.
 */
export class ConnDeadline {
  private at = Infinity
  private timer: Timer | null = null
  private timerAt = Infinity
  private started = 0
  private what = ''
  private draining = false

  constructor(
    private readonly limits: FrontLimits,
    private readonly clock: Clock,
    /** The deadline passed: `what` says which (for the log and the refusal). */
    private readonly expired: (what: string) => void,
  ) {}

  /** Nothing under way: the idle deadline, from now. */
  idle(): void {
    this.draining = false
    this.set(this.clock.now() + this.limits.idleMs, `idle for ${this.limits.idleMs} ms`)
  }

  /** Requests are at the targets and nothing else under way: no deadline. */
  busy(): void {
    this.draining = false
    this.at = Infinity
  }

  /** A request's first byte arrived now: its head is due. */
  head(): void {
    this.draining = false
    this.started = this.clock.now()
    this.set(this.started + this.limits.headMs, `request head not complete within ${this.limits.headMs} ms`)
  }

  /** The head of the request under way declared `bytes` more: the body is due, from its first byte. */
  body(bytes: number): void {
    const ms = Math.round(bodyDeadlineMs(this.limits, bytes))
    this.set(this.started + ms, `request body of ${bytes} bytes not complete within ${ms} ms`)
  }

  /** Replies of `bytes` wait in the socket's buffer for the peer to read them. */
  drain(bytes: number): void {
    // From the moment the buffer filled: replies completing meanwhile do not put it off.
    if (this.draining) return
    this.draining = true
    const ms = Math.round(bodyDeadlineMs(this.limits, bytes))
    this.set(this.clock.now() + ms, `replies of ${bytes} bytes not read within ${ms} ms`)
  }

  stop(): void {
    this.at = Infinity
    this.timer?.cancel()
    this.timer = null
  }

  private set(at: number, what: string): void {
    this.at = at
    this.what = what
    if (this.timer && this.timerAt <= at) return
    this.timer?.cancel()
    this.timerAt = at
    this.timer = this.clock.setTimeout(() => this.fire(), Math.max(0, at - this.clock.now()))
  }

  private fire(): void {
    this.timer = null
    if (this.at === Infinity) return
    if (this.clock.now() >= this.at) return this.expired(this.what)
    this.set(this.at, this.what)
  }
}

/** What both transports' fronts share of the bounds. */
export interface Guards {
  readonly limits: FrontLimits
  readonly clock: Clock
  readonly inflight: InflightCap
}

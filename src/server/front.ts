import net from 'node:net'
import { type Clock, realClock } from '../common/clock.js'
import type { Logger } from '../common/log.js'
import { MSG_MAGIC } from '../protocol/msg.js'
import type { FrontTarget } from './admit.js'
import { createHttpFront, retuneHttp } from './front-http.js'
import { serveMsgs } from './front-msg.js'
import { ConnGate, type FrontLimits, type Guards, InflightCap, frontLimits } from './limits.js'

export type { FrontTarget } from './admit.js'

/**
 * The node's front: one port for both transports. The first byte of a connection says which
 * it speaks: a binary message starts with MSG_MAGIC's 0x9c, an HTTP request with an ASCII
 * method. One port because the port is filesystem-wide (a NID names a host, never a port,
 * and failover NIDs are handed out by the MGS): a node reached by `@tcp` and `@http` NIDs
 * needs no second setting, and a firewall rule for 988 covers both.
 */
export interface Front {
  readonly server: net.Server
  /** The deadlines of a filesystem of this obd_timeout (a target's sys.timeout, once one is mounted). */
  retune(obdTimeoutMs: number): void
  /** Stop listening and drop every connection. */
  close(): Promise<void>
}

export interface FrontOptions {
  clock?: Clock
  /** Bounds other than those of limits.ts (tests scale them down). */
  limits?: Partial<FrontLimits>
}

export function createFront(targets: Map<string, FrontTarget>, log: Logger, opts: FrontOptions = {}): Front {
  const clock = opts.clock ?? realClock
  const limits = frontLimits(undefined, opts.limits)
  const guards: Guards = { limits, clock, inflight: new InflightCap(limits, clock, log) }
  const gate = new ConnGate(limits, clock, log)
  const http = createHttpFront(targets, log, guards)
  const conns = new Set<net.Socket>()
  const server = net.createServer({ noDelay: true }, (sock) => {
    // Over a cap: closed at once (telling an HTTP peer 503 would need its first byte, i.e. holding the connection refused).
    if (!gate.admit(sock)) return void sock.destroy()
    conns.add(sock)
    sock.once('close', () => conns.delete(sock))
    const silent = (): void => void sock.destroy()
    // A connection that has said nothing is dropped before it is told apart, as a late head.
    sock.setTimeout(limits.headMs, silent)
    sock.once('data', (first: Buffer) => {
      sock.setTimeout(0)
      sock.off('timeout', silent)
      sock.pause()
      sock.unshift(first)
      if (first[0] === MSG_MAGIC >>> 24) serveMsgs(sock, targets, log, guards)
      else {
        http.emit('connection', sock)
        // Node's HTTP parser reads a fresh socket's handle directly, past the byte put back
        // above; a 'data' listener makes it take the stream's data, that byte first.
        sock.on('data', () => undefined)
      }
      sock.resume()
    })
    sock.on('error', () => undefined)
  })
  // The HTTP server times out slow request heads only once it has seen 'listening'.
  server.on('listening', () => http.emit('listening'))
  return {
    server,
    retune(obdTimeoutMs) {
      Object.assign(limits, frontLimits(obdTimeoutMs, opts.limits))
      retuneHttp(http, guards)
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      http.close()
      for (const s of conns) s.destroy()
      await closed
    },
  }
}

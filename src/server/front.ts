import net from 'node:net'
import tls from 'node:tls'
import { type Clock, realClock } from '../common/clock.js'
import type { Logger } from '../common/log.js'
import { serverTlsOptions, type TlsMaterial } from '../common/tls.js'
import { MSG_MAGIC, encodeReply } from '../protocol/msg.js'
import { errnoOf } from '../protocol/errno.js'
import { encodeReplyHeader } from '../protocol/wire.js'
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
 *
 * With TLS, a connection must start with a TLS handshake (0x16), then the same choice is made
 * on the first decrypted byte. Plaintext is then refused, with a reply saying why: a port that
 * took both would let anyone skip the certificate check by not asking for TLS.
 */
export interface Front {
  readonly server: net.Server
  /** The deadlines of a filesystem of this obd_timeout (a target's sys.timeout, once one is mounted). */
  retune(obdTimeoutMs: number): void
  /** Stop listening and drop every connection. */
  close(): Promise<void>
}

/** A TLS record of type handshake: how a ClientHello starts. */
const TLS_HANDSHAKE = 0x16

export interface FrontOptions {
  clock?: Clock
  /** Bounds other than those of limits.ts (tests scale them down). */
  limits?: Partial<FrontLimits>
  /** Mutual TLS on the port (plaintext then refused). */
  tls?: TlsMaterial
}

export function createFront(targets: Map<string, FrontTarget>, log: Logger, opts: FrontOptions = {}): Front {
  const clock = opts.clock ?? realClock
  const limits = frontLimits(undefined, opts.limits)
  const guards: Guards = { limits, clock, inflight: new InflightCap(limits, clock, log) }
  const gate = new ConnGate(limits, clock, log)
  const http = createHttpFront(targets, log, guards)
  const conns = new Set<net.Socket>()
  const speak = (sock: net.Socket, first: Buffer): void => {
    if (first[0] === MSG_MAGIC >>> 24) serveMsgs(sock, targets, log, guards)
    else {
      http.emit('connection', sock)
      // Node's HTTP parser reads a fresh socket's handle directly, past the byte put back
      // above; a 'data' listener makes it take the stream's data, that byte first.
      sock.on('data', () => undefined)
    }
    sock.resume()
  }
  const secure = opts.tls ? tls.createServer(serverTlsOptions(opts.tls), (ts) => onFirst(ts, limits.headMs, (first) => speak(ts, first))) : null
  secure?.on('tlsClientError', (e, ts) => log.warn({ remote: ts.remoteAddress, err: e.message }, `TLS handshake from ${ts.remoteAddress} refused: ${e.message}`))
  const server = net.createServer({ noDelay: true }, (sock) => {
    // Over a cap: closed at once (telling an HTTP peer 503 would need its first byte, i.e. holding the connection refused).
    if (!gate.admit(sock)) return void sock.destroy()
    conns.add(sock)
    sock.once('close', () => conns.delete(sock))
    onFirst(sock, limits.headMs, (first) => {
      if (!secure) return speak(sock, first)
      // The TLS socket takes over the handle and first reads what was put back (no resume here).
      if (first[0] === TLS_HANDSHAKE) return void secure.emit('connection', sock)
      log.warn({ remote: sock.remoteAddress }, `plaintext connection from ${sock.remoteAddress} refused: this node requires TLS`)
      refusePlain(sock, first)
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

/**
 * Waits for the first byte, puts it back and hands the paused socket on (the taker resumes it).
 * A connection that says nothing within `ms` is dropped before it is told apart, as a late head.
 */
function onFirst(sock: net.Socket, ms: number, then: (first: Buffer) => void): void {
  const silent = (): void => void sock.destroy()
  sock.setTimeout(ms, silent)
  sock.once('data', (first: Buffer) => {
    sock.setTimeout(0)
    sock.off('timeout', silent)
    sock.pause()
    sock.unshift(first)
    then(first)
  })
}

/** How long a refused plaintext peer has to read why before the connection is dropped. */
const REFUSAL_MS = 5_000

/**
 * One answer in the peer's own protocol, then the end: a binary message for xid 0 (the
 * client's reason for the close) or an HTTP 403. What the peer sent is read and dropped, so
 * the close is a FIN after the answer, not a reset that could discard it.
 */
function refusePlain(sock: net.Socket, first: Buffer): void {
  const error = 'this node requires TLS (mount with -o tls,ca=...,cert=...,key=...)'
  const header = { status: -errnoOf('EACCES'), transno: 0, lastCommitted: 0, flags: [], error }
  sock.setTimeout(REFUSAL_MS, () => sock.destroy())
  sock.on('data', () => undefined)
  sock.resume()
  if (first[0] === MSG_MAGIC >>> 24) return void sock.end(Buffer.concat(encodeReply(0, 403, header, { error, errno: 'EACCES' })))
  const head = Object.entries({ ...encodeReplyHeader(header), 'content-length': '0', connection: 'close' })
  sock.end(`HTTP/1.1 403 Forbidden\r\n${head.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`)
}

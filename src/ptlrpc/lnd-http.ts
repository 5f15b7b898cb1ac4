import type { IncomingHttpHeaders } from 'node:http'
import { Readable } from 'node:stream'
import { type Dispatcher, Pool, errors as undiciErrors } from 'undici'
import { totalLength } from '../common/chunks.js'
import { TLS_CLOSE_HINT, clientTlsOptions } from '../common/tls.js'
import { parseNid } from '../protocol/nid.js'
import { REPLY_LIMITS, parseJson } from '../protocol/msg.js'
import {
  H, RPC_PATH, SMALL_FRAME, type Bulk, authToken, bulkParts, decodeReplyHeader, encodeFrame, encodeReqHeader, jsonBytes, splitFrame, type ReplyHeader, type ReqBody, type ReqHeader,
} from '../protocol/wire.js'
import { CTL_CONNECTIONS, type RawReply, type Route, type RpcTransport, SHARED, TransportError, type TransportOptions, served } from './lnd.js'
import { RequestSigner } from './sign.js'

/** A reply's frame at most, as the TCP LND takes a reply (REPLY_LIMITS): the JSON's length word, the JSON, the bulk. */
const MAX_REPLY = 4 + REPLY_LIMITS.json + REPLY_LIMITS.bulk

/**
 * The LND of `@http` NIDs: one HTTP request per RPC over keep-alive undici Pools, one pool
 * per import, peer and lane (lnd.ts's Route).
 */
export class HttpLnd implements RpcTransport {
  /** By owner, then NID and lane. */
  private readonly pools = new Map<string, Map<string, Pool>>()
  private closed = false
  private readonly signer: RequestSigner | null

  constructor(private readonly o: TransportOptions) {
    this.signer = o.key ? new RequestSigner(o.key) : null
  }

  private pool(nid: string, r: Route): Pool {
    let mine = this.pools.get(r.owner)
    if (!mine) this.pools.set(r.owner, (mine = new Map()))
    const key = `${nid} ${r.lane}`
    let p = mine.get(key)
    if (!p) {
      const { host } = parseNid(nid)
      const secure = this.o.tls
      p = new Pool(`${secure ? 'https' : 'http'}://${host}:${this.o.port}`, {
        connections: r.lane === 'ctl' ? CTL_CONNECTIONS : (this.o.connections ?? 16),
        pipelining: 1,
        // Our own deadlines (AbortSignal) decide when a peer is late, not undici's defaults.
        headersTimeout: 0,
        bodyTimeout: 0,
        // Close idle sockets well before the server would, so a request never meets a socket
        // the server is closing.
        keepAliveTimeout: 4_000,
        keepAliveMaxTimeout: 4_000,
        connect: { timeout: 60_000, ...(secure && clientTlsOptions(secure)) },
      })
      mine.set(key, p)
    }
    return p
  }

  async send(nid: string, h: ReqHeader, body: ReqBody, bulk: Bulk | undefined, signal: AbortSignal, route: Route = SHARED): Promise<RawReply> {
    if (this.closed) throw new TransportError('conn', 'transport closed')
    if (signal.aborted) throw classify(signal.reason, signal)
    const json = jsonBytes(body)
    const parts = encodeFrame(json, bulk)
    const signed = this.signer?.sign(h, json, bulkParts(bulk))
    const length = totalLength(parts)
    // A bulk frame goes out as its parts, piece by piece: the bulk is never copied.
    const payload = length <= SMALL_FRAME ? Buffer.concat(parts, length) : Readable.from(parts)
    let res: CollectedReply
    try {
      res = await new Promise<CollectedReply>((resolve, reject) => {
        const opts: Dispatcher.DispatchOptions = {
          path: RPC_PATH,
          method: 'POST',
          headers: { ...encodeReqHeader(h), ...(signed ? { [H.auth]: signed.token } : {}), 'content-type': 'application/x-lproxy', 'content-length': String(length) },
          body: payload,
        }
        this.pool(nid, route).dispatch(opts, new ReplyCollector(nid, signal, resolve, reject))
      })
    } catch (e) {
      throw classify(e, signal, this.o.tls !== undefined)
    }
    let header: ReplyHeader
    try {
      header = decodeReplyHeader(res.headers)
    } catch (e) {
      throw new TransportError('refused', `HTTP ${res.statusCode} from ${nid}: ${(e as Error).message}`, res.statusCode)
    }
    if (res.statusCode !== 200) return served(nid, res.statusCode, header, undefined, [])
    try {
      const reply = splitFrame(res.body)
      if (signed) this.signer!.check(nid, signed, h.xid, 200, header, authToken(res.headers), reply.json, reply.bulk)
      return served(nid, 200, header, parseJson(reply.json), reply.bulk)
    } catch (e) {
      if (e instanceof TransportError) throw e
      // A malformed frame or JSON: a protocol violation, as the TCP LND reports one.
      throw new TransportError('conn', `EPROTO: reply ${h.xid} from ${nid}: ${(e as Error).message}`)
    }
  }

  /** Drop connections to a peer (after a failure, so the next attempt dials afresh). */
  reset(nid: string, owner?: string): void {
    for (const [who, mine] of this.pools) {
      if (owner !== undefined && who !== owner) continue
      for (const [key, p] of mine) {
        if (!key.startsWith(`${nid} `)) continue
        mine.delete(key)
        void p.destroy().catch(() => undefined)
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true
    const all = [...this.pools.values()].flatMap((m) => [...m.values()])
    this.pools.clear()
    await Promise.all(all.map((p) => p.destroy().catch(() => undefined)))
  }
}

interface CollectedReply {
  statusCode: number
  headers: IncomingHttpHeaders
  /** As the socket delivered it: a reply's bulk is never joined. */
  body: Buffer[]
}

/**
 * Gathers one reply straight from undici's dispatcher (no response stream). The deadline
 * fails the request at once; undici drops it as soon as it starts, if it is still queued.
 */
class ReplyCollector implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | null = null
  private statusCode = 0
  private headers: IncomingHttpHeaders = {}
  private readonly chunks: Buffer[] = []
  private bytes = 0
  private settled = false
  private readonly onAbort = (): void => {
    this.controller?.abort(this.signal.reason as Error)
    this.settle(() => this.reject(this.signal.reason))
  }

  constructor(
    private readonly nid: string,
    private readonly signal: AbortSignal,
    private readonly resolve: (r: CollectedReply) => void,
    private readonly reject: (e: unknown) => void,
  ) {
    signal.addEventListener('abort', this.onAbort, { once: true })
  }

  private settle(fn: () => void): void {
    if (this.settled) return
    this.settled = true
    this.signal.removeEventListener('abort', this.onAbort)
    fn()
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.signal.aborted) controller.abort(this.signal.reason as Error)
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    this.statusCode = statusCode
    this.headers = headers
    const declared = Number(headers['content-length'])
    if (declared > MAX_REPLY) this.tooLarge(`declares ${declared} bytes`)
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.settled) return
    this.bytes += chunk.length
    if (this.bytes > MAX_REPLY) return this.tooLarge(`goes past ${MAX_REPLY} bytes`)
    this.chunks.push(chunk)
  }

  /** Refused before it is all buffered (an endless body would exhaust memory); the connection goes with the request. */
  private tooLarge(what: string): void {
    const e = new TransportError('conn', `EPROTO: reply body from ${this.nid} ${what}, more than a reply may hold`)
    this.controller?.abort(e)
    this.settle(() => this.reject(e))
  }

  onResponseEnd(): void {
    this.settle(() => this.resolve({ statusCode: this.statusCode, headers: this.headers, body: this.chunks }))
  }

  onResponseError(_c: Dispatcher.DispatchController, e: Error): void {
    this.settle(() => this.reject(e))
  }
}

function classify(e: unknown, signal: AbortSignal, secure = false): TransportError {
  if (e instanceof TransportError) return e
  if (signal.aborted) return new TransportError('timeout', String((signal.reason as Error)?.message ?? 'deadline passed'))
  if (e instanceof undiciErrors.RequestAbortedError) return new TransportError('timeout', 'request aborted')
  const code = (e as { code?: string }).code ?? ''
  const msg = (e as Error).message ?? String(e)
  const hint = secure && e instanceof undiciErrors.SocketError ? TLS_CLOSE_HINT : ''
  return new TransportError('conn', `${code || 'error'}: ${msg}${hint}`)
}

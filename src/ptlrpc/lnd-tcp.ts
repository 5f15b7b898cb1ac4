import net from 'node:net'
import tls from 'node:tls'
import { TLS_CLOSE_HINT, clientTlsOptions, type TlsMaterial } from '../common/tls.js'
import { nidHost } from '../protocol/nid.js'
import { MsgReader, REPLY_LIMITS, type ReplyMsg, encodeRequest, parseJson, sendMsg } from '../protocol/msg.js'
import type { SignedRequest } from '../protocol/auth.js'
import { type Bulk, type ReqBody, type ReqHeader, bulkParts, jsonBytes } from '../protocol/wire.js'
import { CTL_CONNECTIONS, type RawReply, type Route, type RpcTransport, SHARED, TransportError, type TransportOptions, served } from './lnd.js'
import { RequestSigner } from './sign.js'

/**
 * io connections per peer and import: each carries many requests, so a few are enough to
 * keep a small RPC off the connections busy with bulk.
 */
const IO_CONNECTIONS = 4
/** Bytes waiting in a socket's buffer past which it counts as full (a small request leaves at once anyway). */
const FULL = 64 * 1024

interface Waiter {
  resolve: (r: RawReply) => void
  fail: (e: TransportError) => void
  /** The request's signature, on a keyed filesystem: its reply must answer it. */
  signed?: SignedRequest
}

/**
 * One long-lived connection: requests leave as they come (TCP_NODELAY, each message one
 * writev), replies come back in any order and are matched by xid. Any failure of the
 * connection fails every request on it with 'conn'; a deadline fails only its own request.
 */
class Conn {
  readonly sock: net.Socket
  private readonly waiting = new Map<number, Waiter>()
  /** xids given up on (a deadline) whose reply may still come: it answers nothing, not even a resend of the same xid. */
  private readonly abandoned = new Set<number>()
  private readonly reader = new MsgReader('reply', REPLY_LIMITS)
  private failed = false
  private error: string | null = null

  constructor(
    private readonly nid: string,
    port: number,
    secure: TlsMaterial | undefined,
    private readonly gone: (c: Conn) => void,
    private readonly signer: RequestSigner | null,
  ) {
    const to = { host: nidHost(nid), port }
    // Requests written before the handshake ends wait in the TLS socket's buffer.
    this.sock = secure ? tls.connect({ ...to, ...clientTlsOptions(secure) }).setNoDelay(true) : net.connect({ ...to, noDelay: true })
    this.sock.on('data', (c: Buffer) => this.data(c))
    this.sock.on('error', (e: NodeJS.ErrnoException) => (this.error ??= `${e.code ?? 'error'}: ${e.message}`))
    this.sock.on('close', () => this.fail(new TransportError('conn', this.error ?? `ECONNRESET: ${this.nid} closed the connection${secure ? TLS_CLOSE_HINT : ''}`)))
  }

  /** What a new request would queue behind: full while bulk waits to leave, else the requests awaiting replies. */
  get busy(): number {
    return this.sock.writableLength > FULL ? Infinity : this.waiting.size
  }

  has(xid: number): boolean {
    return this.waiting.has(xid) || this.abandoned.has(xid)
  }

  send(h: ReqHeader, parts: Buffer[], signal: AbortSignal, signed?: SignedRequest): Promise<RawReply> {
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        if (this.waiting.get(h.xid) !== w) return
        this.waiting.delete(h.xid)
        this.abandoned.add(h.xid)
        reject(timeout(signal))
      }
      const w: Waiter = {
        resolve: (r) => {
          signal.removeEventListener('abort', onAbort)
          resolve(r)
        },
        fail: (e) => {
          signal.removeEventListener('abort', onAbort)
          reject(e)
        },
        signed,
      }
      this.waiting.set(h.xid, w)
      signal.addEventListener('abort', onAbort, { once: true })
      sendMsg(this.sock, parts)
    })
  }

  private data(chunk: Buffer): void {
    try {
      this.reader.push(chunk, (m) => this.reply(m as ReplyMsg))
    } catch (e) {
      this.error = `EPROTO: malformed reply from ${this.nid}: ${(e as Error).message}`
      this.sock.destroy()
    }
  }

  private reply(m: ReplyMsg): void {
    const w = this.waiting.get(m.xid)
    if (!w) {
      if (this.abandoned.delete(m.xid)) return
      // A refusal for no request of ours: the peer's reason for closing the connection.
      if (m.code !== 200) this.error = `ECONNRESET: ${this.nid} closed the connection: ${m.header.error ?? m.code}`
      return
    }
    this.waiting.delete(m.xid)
    let body: unknown
    try {
      // Nothing of a reply is read before it proves to answer this request.
      if (w.signed) this.signer!.check(this.nid, w.signed, m.xid, m.code, m.header, m.auth, m.json, m.bulk)
      body = parseJson(m.json)
    } catch (e) {
      if (e instanceof TransportError) return w.fail(e)
      return w.fail(new TransportError('conn', `EPROTO: reply ${m.xid} from ${this.nid}: ${(e as Error).message}`))
    }
    try {
      w.resolve(served(this.nid, m.code, m.header, body, m.bulk))
    } catch (e) {
      w.fail(e as TransportError)
    }
  }

  fail(e: TransportError): void {
    if (this.failed) return
    this.failed = true
    this.gone(this)
    this.sock.destroy()
    for (const w of this.waiting.values()) w.fail(e)
    this.waiting.clear()
  }
}

/**
 * The LND of `@tcp` NIDs: lproxy's binary messages (protocol/msg.ts) over long-lived TCP
 * connections, per import, peer and lane (lnd.ts's Route) as the HTTP LND's pools are, so a
 * ping never waits behind bulk and a reset touches only the failing import's connections.
 * Back-pressure is the socket's own: a request joins a connection whose buffer is empty,
 * or the least loaded one when every one is full.
 */
export class TcpLnd implements RpcTransport {
  /** By owner, then NID and lane. */
  private readonly conns = new Map<string, Map<string, Conn[]>>()
  private closed = false
  private readonly signer: RequestSigner | null

  constructor(private readonly o: TransportOptions) {
    this.signer = o.key ? new RequestSigner(o.key) : null
  }

  async send(nid: string, h: ReqHeader, body: ReqBody, bulk: Bulk | undefined, signal: AbortSignal, route: Route = SHARED): Promise<RawReply> {
    if (this.closed) throw new TransportError('conn', 'transport closed')
    if (signal.aborted) throw timeout(signal)
    const json = jsonBytes(body)
    const signed = this.signer?.sign(h, json, bulkParts(bulk))
    return this.pick(nid, route, h.xid).send(h, encodeRequest(h, json, bulk, signed?.token), signal, signed)
  }

  private pick(nid: string, r: Route, xid: number): Conn {
    let mine = this.conns.get(r.owner)
    if (!mine) this.conns.set(r.owner, (mine = new Map()))
    const key = `${nid} ${r.lane}`
    let list = mine.get(key)
    if (!list) mine.set(key, (list = []))
    const max = r.lane === 'ctl' ? CTL_CONNECTIONS : (this.o.connections ?? IO_CONNECTIONS)
    let best: Conn | null = null
    // A resend reuses its xid: it never shares a connection with its original, still waiting or given up on with its reply due.
    for (const c of list) if (!c.has(xid) && (!best || c.busy < best.busy)) best = c
    // An idle connection, else a new one while under the limit: a small RPC shares neither the
    // outgoing bytes of a write nor the returning bytes of a read when it need not.
    if (best && (best.busy === 0 || list.length >= max)) return best
    const mineNow = mine
    const c: Conn = new Conn(nid, this.o.port, this.o.tls, () => {
      const at = list.indexOf(c)
      if (at >= 0) list.splice(at, 1)
      if (!list.length && mineNow.get(key) === list) mineNow.delete(key)
    }, this.signer)
    list.push(c)
    return c
  }

  reset(nid: string, owner?: string): void {
    for (const [who, mine] of this.conns) {
      if (owner !== undefined && who !== owner) continue
      for (const [key, list] of mine)
        if (key.startsWith(`${nid} `)) for (const c of [...list]) c.fail(new TransportError('conn', `ECONNRESET: connections to ${nid} reset`))
    }
  }

  async close(): Promise<void> {
    this.closed = true
    const all = [...this.conns.values()].flatMap((m) => [...m.values()].flat())
    for (const c of all) c.fail(new TransportError('conn', 'transport closed'))
    this.conns.clear()
  }
}

function timeout(signal: AbortSignal): TransportError {
  return new TransportError('timeout', String((signal.reason as Error | undefined)?.message ?? 'deadline passed'))
}

import { lndOf } from '../protocol/nid.js'
import type { Bulk, ReqBody, ReqHeader } from '../protocol/wire.js'
import type { HttpLnd } from './lnd-http.js'
import { TcpLnd } from './lnd-tcp.js'
import { type RawReply, type Route, type RpcTransport, TransportError, type TransportOptions } from './lnd.js'

export { type Lane, type RawReply, type Route, type RpcTransport, TransportError, type TransportFailure, type TransportOptions } from './lnd.js'

/**
 * Carries RPCs to NIDs, by the LND the NID's network selects (as LNet does): `@tcp` lproxy's
 * binary messages over TCP (lnd-tcp.ts), `@http` undici (lnd-http.ts). Both classify every
 * failure the way the import needs it: the peer refused or dropped the connection (`conn`),
 * the deadline passed (`timeout`), or the peer answered and refused the request itself
 * (`refused`: malformed, no such target here, too large; `code` says which, in HTTP's
 * numbers on both transports).
 *
 * The HTTP LND is loaded at its first `@http` NID: undici is a sixth of a process's start-up
 * CPU (every command, node and mount daemon), and most sites never name an `@http` NID.
 */
export class Transport implements RpcTransport {
  private readonly tcp: TcpLnd
  private http: Promise<HttpLnd> | undefined
  private closed = false

  constructor(private readonly o: TransportOptions) {
    this.tcp = new TcpLnd(o)
  }

  send(nid: string, h: ReqHeader, body: ReqBody, bulk: Bulk | undefined, signal: AbortSignal, route?: Route): Promise<RawReply> {
    if (lndOf(nid) !== 'http') return this.tcp.send(nid, h, body, bulk, signal, route)
    if (this.closed && !this.http) return Promise.reject(new TransportError('conn', 'transport closed'))
    return this.httpLnd().then((l) => l.send(nid, h, body, bulk, signal, route))
  }

  reset(nid: string, owner?: string): void {
    if (lndOf(nid) !== 'http') this.tcp.reset(nid, owner)
    // Chained on the load, so that a send made after this reset is queued after it too.
    else void this.http?.then((l) => l.reset(nid, owner))
  }

  async close(): Promise<void> {
    this.closed = true
    await Promise.all([this.tcp.close(), this.http?.then((l) => l.close())])
  }

  private httpLnd(): Promise<HttpLnd> {
    return (this.http ??= import('./lnd-http.js').then((m) => new m.HttpLnd(this.o)))
  }
}

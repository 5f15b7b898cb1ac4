import { lndOf } from '../protocol/nid.js'
import type { Bulk, ReqBody, ReqHeader } from '../protocol/wire.js'
import { HttpLnd } from './lnd-http.js'
import { TcpLnd } from './lnd-tcp.js'
import type { RawReply, Route, RpcTransport, TransportOptions } from './lnd.js'

export { type Lane, type RawReply, type Route, type RpcTransport, TransportError, type TransportFailure, type TransportOptions } from './lnd.js'

/**
 * Carries RPCs to NIDs, by the LND the NID's network selects (as LNet does): `@tcp` lproxy's
 * binary messages over TCP (lnd-tcp.ts), `@http` undici (lnd-http.ts). Both classify every
 * failure the way the import needs it: the peer refused or dropped the connection (`conn`),
 * the deadline passed (`timeout`), or the peer answered and refused the request itself
 * (`refused`: malformed, no such target here, too large; `code` says which, in HTTP's
 * numbers on both transports).
 */
export class Transport implements RpcTransport {
  private readonly tcp: TcpLnd
  private readonly http: HttpLnd

  constructor(o: TransportOptions) {
    this.tcp = new TcpLnd(o)
    this.http = new HttpLnd(o)
  }

  send(nid: string, h: ReqHeader, body: ReqBody, bulk: Bulk | undefined, signal: AbortSignal, route?: Route): Promise<RawReply> {
    return this.lnd(nid).send(nid, h, body, bulk, signal, route)
  }

  reset(nid: string, owner?: string): void {
    this.lnd(nid).reset(nid, owner)
  }

  async close(): Promise<void> {
    await Promise.all([this.tcp.close(), this.http.close()])
  }

  private lnd(nid: string): RpcTransport {
    return lndOf(nid) === 'http' ? this.http : this.tcp
  }
}

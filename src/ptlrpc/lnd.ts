import type { SigningKey } from '../protocol/auth.js'
import type { TlsMaterial } from '../common/tls.js'
import type { Bulk, ReplyHeader, ReqBody, ReqHeader } from '../protocol/wire.js'

/**
 * What every LND shares: the seam imports use, its failure kinds and its routes (see transport.ts).
 * `auth`: a reply that is not the signed answer to the request (forged, or another key's) on
 * a keyed filesystem: never taken as data.
 */
export type TransportFailure = 'conn' | 'timeout' | 'refused' | 'auth'

export class TransportError extends Error {
  constructor(
    readonly kind: TransportFailure,
    message: string,
    /** A refusal's verdict code: 400 malformed, 404 no such target here, 413 too large, 500 the node failed, 503 not now. */
    readonly code?: number,
    readonly status?: number,
  ) {
    super(message)
  }
}

export interface RawReply {
  header: ReplyHeader
  body: unknown
  /** The reply's bulk in the socket's chunks. */
  bulk: Buffer[]
}

/**
 * Which connections an RPC travels on. Each import has its own to each peer, so that the
 * reset of one import's connections never fails another's requests (after a failover one OSS
 * serves several targets). `ctl` (connects, pings, recovery) has connections of its own, so a
 * liveness ping never queues behind a full window of bulk writes.
 */
export type Lane = 'io' | 'ctl'

export interface Route {
  /** The import's name. */
  owner: string
  lane: Lane
}

/** Callers with no import of their own (tools, benchmarks). */
export const SHARED: Route = { owner: '', lane: 'io' }
/** A control lane needs no more: a ping, plus a replay or connect going on meanwhile. */
export const CTL_CONNECTIONS = 2

/** What imports need from a transport (PtlrpcClient takes another one, e.g. a test's fake). */
export interface RpcTransport {
  send(nid: string, h: ReqHeader, body: ReqBody, bulk: Bulk | undefined, signal: AbortSignal, route?: Route): Promise<RawReply>
  /** Drop the connections of `owner` (every owner's, when none is named) to a peer. */
  reset(nid: string, owner?: string): void
  close(): Promise<void>
}

export interface TransportOptions {
  port: number
  /** io connections per peer and import (HTTP: one request each at a time; tcp: many each). */
  connections?: number
  /** The filesystem's shared key of this client's class: requests signed, replies checked. */
  key?: SigningKey
  /** Mutual TLS to every peer (common/tls.ts): this side's certificate, the server's checked against the CA. */
  tls?: TlsMaterial
}

/** A peer's answer: served (code 200), or refused at the protocol level, on either transport. */
export function served(nid: string, code: number, header: ReplyHeader, body: unknown, bulk: Buffer[]): RawReply {
  if (code !== 200) throw new TransportError('refused', header.error ?? `${nid} refused the request (${code})`, code, header.status)
  return { header, body, bulk }
}

import { randomUUID } from 'node:crypto'
import type { Clock } from '../common/clock.js'
import type { Logger } from '../common/log.js'
import type { SigningKey } from '../protocol/auth.js'
import type { TlsMaterial } from '../common/tls.js'
import { Transport, type RpcTransport } from './transport.js'
import { Tunables } from './tunables.js'

/**
 * One RPC client identity (a mount, or a server's own client such as the MDT's OSP): its
 * uuid, its xid space, the transport and the timing all its imports share.
 */
export class PtlrpcClient {
  readonly uuid: string
  readonly transport: RpcTransport
  readonly tunables: Tunables
  /**
   * Seeded from the wall clock in microseconds, as Lustre seeds xids from the time: a
   * restarted client (same uuid) never reuses an xid the target may hold a saved reply for.
   */
  private xid: number

  constructor(
    readonly clock: Clock,
    readonly log: Logger,
    port: number,
    /** key: the filesystem's shared key of this client's class (none: a filesystem without a key). tls: mutual TLS material. */
    opts: { uuid?: string; tunables?: Tunables; connections?: number; transport?: RpcTransport; key?: SigningKey; tls?: TlsMaterial } = {},
  ) {
    this.uuid = opts.uuid ?? randomUUID()
    this.tunables = opts.tunables ?? new Tunables()
    this.transport = opts.transport ?? new Transport({ port, connections: opts.connections, key: opts.key, tls: opts.tls })
    this.xid = Math.floor(clock.wallNow() * 1000)
  }

  nextXid(): number {
    return ++this.xid
  }

  get lastXid(): number {
    return this.xid
  }

  async close(): Promise<void> {
    await this.transport.close()
  }
}

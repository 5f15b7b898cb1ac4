/**
 * A node front (both transports, src/server/front.ts) serving one stand-in OST that answers
 * pings at once and holds every other request until the test answers it: for tests of the
 * transports' connections, lanes and xid matching.
 */
import { EventEmitter, once } from 'node:events'
import { silentLogger } from '../../src/common/log.js'
import { totalLength } from '../../src/common/chunks.js'
import type { ReqHeader } from '../../src/protocol/wire.js'
import { createFront, type Front } from '../../src/server/front.js'
import type { TargetReply } from '../../src/server/target/target.js'

export const STANDIN_TARGET = 'spfs-OST0001'

export interface Held {
  h: ReqHeader
  /** Bytes of bulk the request brought. */
  bulk: number
  /** Reply with status 0 and `{ xid }` as the body, so a test sees which request a reply answers. */
  answer: () => void
}

export class StandIn {
  readonly held: Held[] = []
  /** Ops in the order their requests reached the target. */
  readonly arrived: string[] = []
  private readonly arrivals = new EventEmitter()
  private front: Front | null = null

  async listen(host: string, port: number): Promise<void> {
    this.front = createFront(
      new Map([
        [
          STANDIN_TARGET,
          {
            kind: 'ost' as const,
            handle: (h: ReqHeader, _args: unknown, _r: unknown, bulk: Buffer[]) =>
              new Promise<TargetReply>((resolve) => {
                this.arrived.push(h.op)
                const answer = () => resolve({ http: 200, status: 0, transno: 0, lastCommitted: 0, flags: [], body: { xid: h.xid } })
                if (h.op === 'ping') return answer()
                this.held.push({ h, bulk: totalLength(bulk), answer })
                this.arrivals.emit('held')
              }),
          },
        ],
      ]),
      silentLogger,
    )
    this.front.server.listen(port, host)
    await once(this.front.server, 'listening')
  }

  async heldCount(n: number): Promise<void> {
    while (this.held.length < n) await once(this.arrivals, 'held')
  }

  /** Answer and forget every held request. */
  release(): void {
    for (const x of this.held.splice(0)) x.answer()
  }

  async close(): Promise<void> {
    this.release()
    await this.front?.close()
  }
}

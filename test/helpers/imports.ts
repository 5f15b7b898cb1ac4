/**
 * One client's imports of an OST and the MDT on real nodes, without the rest of the client
 * stack: for tests of the transports beneath (which NIDs, TLS or not).
 */
import { realClock } from '../../src/common/clock.js'
import { silentLogger } from '../../src/common/log.js'
import type { TlsMaterial } from '../../src/common/tls.js'
import { PtlrpcClient } from '../../src/ptlrpc/client.js'
import { Import } from '../../src/ptlrpc/import.js'

export const OST1 = 'spfs-OST0001'
export const MDT0 = 'spfs-MDT0000'

export interface ClientImports {
  ost: Import
  mdt: Import
  close(): Promise<void>
}

/** Imports of spfs-OST0001 on `ossNid` and spfs-MDT0000 on `mdsNid`, obd_timeout 2 s. */
export function clientImports(o: { port: number; mdsNid: string; ossNid: string; tls?: TlsMaterial }): ClientImports {
  const c = new PtlrpcClient(realClock, silentLogger, o.port, { tls: o.tls })
  c.tunables.timeout = 2
  const ost = new Import({ client: c, target: OST1, name: `${OST1}-osc-${o.ossNid}`, nids: [o.ossNid], log: silentLogger })
  const mdt = new Import({ client: c, target: MDT0, name: `${MDT0}-mdc-${o.mdsNid}`, nids: [o.mdsNid], log: silentLogger })
  return {
    ost,
    mdt,
    async close() {
      await Promise.all([ost.close(), mdt.close()])
      await c.close()
    },
  }
}

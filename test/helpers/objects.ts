import { realClock } from '../../src/common/clock.js'
import { silentLogger } from '../../src/common/log.js'
import type { OpReplies } from '../../src/protocol/ops.js'
import { PtlrpcClient } from '../../src/ptlrpc/client.js'
import { Import } from '../../src/ptlrpc/import.js'

/**
 * The object count of an OST (its statfs `objects`), asked as a client of its own: unlike a
 * mount's `df`, this answers while the mount has the OST deactivated. Waits for the OST to
 * serve (and end its recovery: a new client is refused until then).
 */
export async function ostObjects(nids: string[], port: number, target: string): Promise<number> {
  const client = new PtlrpcClient(realClock, silentLogger, port)
  client.tunables.timeout = 4
  const imp = new Import({ client, target, name: `${target}-osc-test`, nids, log: silentLogger })
  try {
    imp.connect()
    return (await imp.request<OpReplies['statfs']>('statfs', {})).body.objects ?? -1
  } finally {
    await imp.close()
    await client.close()
  }
}

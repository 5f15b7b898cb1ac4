import pTimeout from 'p-timeout'
import { realClock } from '../common/clock.js'
import { silentLogger } from '../common/log.js'
import type { TlsMaterial } from '../common/tls.js'
import { LpError } from '../protocol/errno.js'
import { PtlrpcClient } from '../ptlrpc/client.js'
import type { SigningKey } from '../protocol/auth.js'
import { Mgc } from './mgc.js'

/** One exchange with the MGS from a command that has no mount: connect, ask, disconnect, bounded in time. */
/** How a command without a mount reaches the MGS: the shared key it signs with, the TLS material it connects with. */
export interface MgsAccess {
  key?: SigningKey
  tls?: TlsMaterial
}

export async function withMgs<T>(nids: string[], port: number, fn: (mgc: Mgc) => Promise<T>, timeoutMs = 10_000, access: MgsAccess = {}): Promise<T> {
  const client = new PtlrpcClient(realClock, silentLogger, port, { key: access.key, tls: access.tls })
  const mgc = new Mgc(client, nids, silentLogger)
  try {
    mgc.start()
    return await pTimeout(fn(mgc), {
      milliseconds: timeoutMs,
      message: new LpError('ETIMEDOUT', `the MGS at ${nids.join(':')} (port ${port}) did not answer within ${timeoutMs / 1000} s`),
    })
  } finally {
    await mgc.close()
    await client.close()
  }
}

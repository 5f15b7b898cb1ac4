import pTimeout from 'p-timeout'
import { realClock } from '../common/clock.js'
import { silentLogger } from '../common/log.js'
import type { TlsMaterial } from '../common/tls.js'
import { LpError, errnoOf } from '../protocol/errno.js'
import { PtlrpcClient } from '../ptlrpc/client.js'
import type { SigningKey } from '../protocol/auth.js'
import { Mgc } from './mgc.js'

/** How a command without a mount reaches the MGS: the shared key it signs with, the TLS material it connects with. */
export interface MgsAccess {
  key?: SigningKey
  tls?: TlsMaterial
}

/** One exchange with the MGS from a command that has no mount: connect, ask, disconnect, bounded in time. */
export async function withMgs<T>(nids: string[], port: number, fn: (mgc: Mgc) => Promise<T>, timeoutMs = 10_000, access: MgsAccess = {}): Promise<T> {
  const client = new PtlrpcClient(realClock, silentLogger, port, { key: access.key, tls: access.tls })
  const mgc = new Mgc(client, nids, silentLogger)
  // A keyed MGS refuses an unsigned (or wrongly signed) connect: say so at once instead of timing out.
  const imp = mgc.import
  let stop = (): void => undefined
  const refused = new Promise<never>((_, reject) => {
    const on = (s: string) => {
      if (s === 'DISCONN' && imp.lastConnectStatus === -errnoOf('EACCES'))
        reject(new LpError('EACCES', `the MGS at ${nids.join(':')} refused the connection as not authenticated: a filesystem with a shared key needs --key-file with one of its keys`))
    }
    imp.on('state', on)
    stop = () => imp.off('state', on)
  })
  try {
    mgc.start()
    return await pTimeout(Promise.race([fn(mgc), refused]), {
      milliseconds: timeoutMs,
      message: new LpError('ETIMEDOUT', `the MGS at ${nids.join(':')} (port ${port}) did not answer within ${timeoutMs / 1000} s`),
    })
  } finally {
    stop()
    await mgc.close()
    await client.close()
  }
}

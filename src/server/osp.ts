import pRetry from 'p-retry'
import type { Logger } from '../common/log.js'
import { LpError } from '../protocol/errno.js'
import type { Layout } from '../protocol/ops.js'
import { targetName } from '../protocol/names.js'
import type { PtlrpcClient } from '../ptlrpc/client.js'
import { Import } from '../ptlrpc/import.js'
import type { Mgc } from '../mgc/mgc.js'
import type { ObjectDestroyer } from './mdt/mdt.js'

/**
 * The MDT's own client of the OSTs (Lustre's OSP): one import per OST, found through the
 * MGS configuration, used to destroy the objects of removed files until each OST confirms.
 */
export class Osp implements ObjectDestroyer {
  private readonly imports = new Map<number, Import>()

  constructor(
    private readonly client: PtlrpcClient,
    private readonly mgc: Mgc,
    private readonly fsname: string,
    private readonly log: Logger,
  ) {}

  private async import(index: number): Promise<Import> {
    let imp = this.imports.get(index)
    if (imp) return imp
    const cfg = await this.mgc.config()
    const name = targetName(this.fsname, { kind: 'ost', index })
    const t = cfg.targets.find((x) => x.name === name)
    if (!t) throw new LpError('ENOENT', `${name} is not registered with the MGS yet`)
    imp = this.imports.get(index)
    if (imp) return imp
    imp = new Import({ client: this.client, target: name, name: `${name}-osc-MDT0000`, nids: t.nids, log: this.log })
    this.imports.set(index, imp)
    imp.connect()
    return imp
  }

  async destroy(fid: number, layout: Layout, signal: AbortSignal): Promise<void> {
    for (const index of new Set(layout.osts)) {
      await pRetry(
        async () => {
          const imp = await this.import(index)
          await imp.request('ost_destroy', { fid })
        },
        {
          retries: Infinity,
          signal,
          minTimeout: 500,
          maxTimeout: 30_000,
          onFailedAttempt: ({ error, attemptNumber }) => {
            if (attemptNumber === 1 || attemptNumber % 20 === 0)
              this.log.info({ fid, ost: index, err: error.message }, `destroy of FID ${fid} on OST${index} waits: ${error.message}`)
          },
        },
      )
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.imports.values()].map((i) => i.close()))
  }
}

import { once } from 'node:events'
import pRetry from 'p-retry'
import { KeyedBatcher } from '../common/batcher.js'
import type { Logger } from '../common/log.js'
import { LpError } from '../protocol/errno.js'
import { MAX_DESTROY_BATCH, type Layout } from '../protocol/ops.js'
import { targetName } from '../protocol/names.js'
import type { PtlrpcClient } from '../ptlrpc/client.js'
import { Import } from '../ptlrpc/import.js'
import type { Mgc } from '../mgc/mgc.js'
import { followMgs } from '../mgc/follow.js'
import type { ObjectDestroyer } from './mdt/mdt.js'

/**
 * The MDT's own client of the OSTs (Lustre's OSP): one import per OST, found through the
 * MGS configuration, used to destroy the objects of removed files until each OST confirms.
 * It follows the MGS as clients do: imperative recovery, and an OST permanently deactivated
 * (conf_param ...osc.active=0) has its destroys held until it is activated again.
 */
export class Osp implements ObjectDestroyer {
  private readonly imports = new Map<number, Import>()
  private following = false
  private readonly held = new Map<Import, Promise<void>>()
  /** Per OST, the files whose objects wait for an ost_destroy. */
  private readonly destroys = new KeyedBatcher<number, { fid: number; signal: AbortSignal }>(MAX_DESTROY_BATCH, (index, items) =>
    this.sendDestroys(index, items),
  )

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
    if (!t.active) imp.deactivate()
    imp.connect()
    if (!this.following) {
      this.following = true
      followMgs(this.mgc, cfg, { ir: true, log: this.log, importOf: (n) => [...this.imports.values()].find((i) => i.target === n) })
    }
    return imp
  }

  /** Resolves once the OST is activated (the import moves on to connecting) or closed; one wait per OST. */
  private whileInactive(imp: Import): Promise<void> {
    if (!imp.deactive) return Promise.resolve()
    let held = this.held.get(imp)
    if (!held) {
      this.log.info({ target: imp.target }, `${imp.target}: deactivated; object destroys on it are held until it is activated`)
      held = (async () => {
        while (imp.deactive && !imp.isClosed()) await once(imp, 'state')
      })().finally(() => this.held.delete(imp))
      this.held.set(imp, held)
    }
    return held
  }

  /**
   * Resolves once every OST of the layout confirmed the destroy of the file's objects. The
   * FIDs queued for an OST while one ost_destroy is out leave together in the next, so an
   * rm -r of many files costs a few RPCs per OST rather than one per file.
   */
  destroy(fid: number, layout: Layout, signal: AbortSignal): Promise<void> {
    return Promise.all([...new Set(layout.osts)].map((index) => this.destroys.add(index, { fid, signal }))).then(() => undefined)
  }

  /** One ost_destroy for a batch, retried until the OST confirms; it ends when any of its files' callers stops (in practice, the one MDT). */
  private sendDestroys(index: number, items: Array<{ fid: number; signal: AbortSignal }>): Promise<void> {
    const fids = items.map((i) => i.fid)
    return pRetry(
      async () => {
        const imp = await this.import(index)
        await this.whileInactive(imp)
        await imp.request('ost_destroy', { fids })
      },
      {
        retries: Infinity,
        signal: AbortSignal.any([...new Set(items.map((i) => i.signal))]),
        minTimeout: 500,
        maxTimeout: 30_000,
        onFailedAttempt: ({ error, attemptNumber }) => {
          if (attemptNumber === 1 || attemptNumber % 20 === 0)
            this.log.info({ fid: fids[0], files: fids.length, ost: index, err: error.message }, `destroy of ${fids.length} file(s) on OST${index} waits: ${error.message}`)
        },
      },
    )
  }

  async close(): Promise<void> {
    await Promise.all([...this.imports.values()].map((i) => i.close()))
  }
}

import { once } from 'node:events'
import pRetry from 'p-retry'
import { KeyedBatcher } from '../common/batcher.js'
import type { Logger } from '../common/log.js'
import { LpError } from '../protocol/errno.js'
import { MAX_DESTROY_BATCH, type FsConfig, type Layout, type OpReplies } from '../protocol/ops.js'
import { parseTargetName, targetName } from '../protocol/names.js'
import type { PtlrpcClient } from '../ptlrpc/client.js'
import { Import } from '../ptlrpc/import.js'
import type { Mgc } from '../mgc/mgc.js'
import { followMgs } from '../mgc/follow.js'
import type { ObjectDestroyer } from './mdt/mdt.js'

interface Queued {
  fid: number
  signal: AbortSignal
  /** Set by the batch that carried it: where, and under which transno, the OST executed it. */
  sent?: { imp: Import; transno: number }
}

/**
 * The MDT's own client of the OSTs (Lustre's OSP): one import per OST, found through the
 * MGS configuration and connected to every OST as soon as the MDT starts. It destroys the
 * objects of removed files until each OST has committed the destroy, and lists the OSTs'
 * objects for the orphan cleanup and lfsck. Its PtlrpcClient has a UUID of its own, new at
 * every start: an incarnation never inherits the saved replies of the one before (whose
 * export the OSTs' ping evictor removes). It follows the MGS as clients do: imperative
 * recovery, and an OST permanently deactivated (conf_param ...osc.active=0) has its destroys
 * held until it is activated again.
 */
export class Osp implements ObjectDestroyer {
  private readonly imports = new Map<number, Import>()
  private following = false
  private readonly held = new Map<Import, Promise<void>>()
  private readonly connectHooks: Array<(ost: number) => void> = []
  private readonly abort = new AbortController()
  /** The OST indices the MGS lists, as last read: null until the first read. */
  private listed: Set<number> | null = null
  /** Per OST, the files whose objects wait for an ost_destroy. */
  private readonly destroys = new KeyedBatcher<number, Queued>(MAX_DESTROY_BATCH, (index, items) => this.sendDestroys(index, items))

  constructor(
    private readonly client: PtlrpcClient,
    private readonly mgc: Mgc,
    private readonly fsname: string,
    private readonly log: Logger,
  ) {}

  /** Connect to every OST the MGS knows (retrying until the MGS answers); later ones as they register. */
  start(): void {
    void pRetry(
      async () => {
        const cfg = await this.mgc.config()
        this.follow(cfg)
        const osts = this.noteListed(cfg)
        this.log.info({ osts: osts.length }, `OSP: connecting to ${osts.length} OST(s): ${osts.map((t) => t.name).join(', ') || 'none registered yet'}`)
        for (const t of osts) await this.import(t.index)
      },
      {
        retries: Infinity,
        signal: this.abort.signal,
        minTimeout: 500,
        maxTimeout: 10_000,
        onFailedAttempt: ({ error }) => this.log.info({ err: error.message }, `OSP: the OST list from the MGS waits: ${error.message}`),
      },
    ).catch(() => undefined)
  }

  /** Follow the MGS (once): imperative recovery, activation, and OSTs registering later. */
  private follow(cfg: FsConfig): void {
    if (this.following) return
    this.following = true
    followMgs(this.mgc, cfg, { ir: true, log: this.log, importOf: (n) => this.importOf(n) })
  }

  /** Called with the OST's index each time its import becomes FULL (connect and every reconnect). */
  onConnect(fn: (ost: number) => void): void {
    this.connectHooks.push(fn)
  }

  /** The OSTs the MGS lists now, noted with those it listed before (an OST never leaves the configuration). */
  private noteListed(cfg: FsConfig): FsConfig['targets'] {
    const osts = cfg.targets.filter((t) => t.kind === 'ost')
    this.listed = new Set([...(this.listed ?? []), ...osts.map((t) => t.index)])
    return osts
  }

  checkOsts(osts: readonly number[]): Promise<void> | undefined {
    if (this.listed && osts.every((i) => this.listed!.has(i))) return undefined
    return this.mgc.config().then((cfg) => {
      this.noteListed(cfg)
      const missing = [...new Set(osts.filter((i) => !this.listed!.has(i)))]
      if (missing.length) throw new LpError('EINVAL', `the layout names OST index ${missing.join(', ')}, which the MGS does not list`)
    })
  }

  /** Its imports, one per OST (osp.<fsname>-OSTxxxx-osc-MDT0000 in get_param). */
  get devices(): Import[] {
    return [...this.imports.values()]
  }

  /** What its imports' get_param views need of the PtlrpcClient they share. */
  get ptlrpc(): Pick<PtlrpcClient, 'tunables' | 'clock'> {
    return this.client
  }

  /** The OSTs whose import is connected now. */
  connected(): number[] {
    return [...this.imports].filter(([, imp]) => imp.state === 'FULL' && !imp.deactive).map(([i]) => i)
  }

  /** Every OST of the filesystem, as the MGS lists them. */
  async osts(): Promise<number[]> {
    return (await this.mgc.config()).targets.filter((t) => t.kind === 'ost').map((t) => t.index)
  }

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
    imp.on('state', (s: string) => {
      if (s === 'FULL') for (const fn of this.connectHooks) fn(index)
    })
    if (!t.active) imp.deactivate()
    imp.connect()
    this.follow(cfg)
    return imp
  }

  /** An OST announced on the MGS that we have no import for yet (a new OST) is connected now. */
  private importOf(name: string): Import | undefined {
    const imp = [...this.imports.values()].find((i) => i.target === name)
    const id = parseTargetName(name)
    const ours = id?.kind === 'ost' && targetName(this.fsname, id) === name
    // Named by the MGS's configuration (a new OST registered): listed from now on.
    if (ours) this.listed?.add(id.index)
    if (!imp && ours && !this.abort.signal.aborted) this.import(id.index).catch(() => undefined)
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
   * Resolves once every OST of the layout has COMMITTED the destroy of the file's objects (the
   * MDT may then cancel its llog record: a destroy the OST loses in a crash is sent again).
   * The FIDs queued for an OST while one ost_destroy is out leave together in the next, so an
   * rm -r of many files costs a few RPCs per OST rather than one per file.
   */
  destroy(fid: number, layout: Layout, signal: AbortSignal): Promise<void> {
    return Promise.all([...new Set(layout.osts)].map((index) => this.destroyOn(index, fid, signal))).then(() => undefined)
  }

  private async destroyOn(index: number, fid: number, signal: AbortSignal): Promise<void> {
    for (;;) {
      const item: Queued = { fid, signal }
      await this.destroys.add(index, item)
      try {
        await item.sent!.imp.whenCommitted(item.sent!.transno)
        return
      } catch (e) {
        // Invalidated (evicted) before the commit: the OST may have lost it; send it again.
        if (signal.aborted) throw e
        this.log.info({ fid, ost: index, err: (e as Error).message }, `destroy of FID ${fid} on OST${index} not known committed; sending it again`)
      }
    }
  }

  /** One ost_destroy for a batch, retried until the OST executes it; it ends when any of its files' callers stops (in practice, the one MDT). */
  private sendDestroys(index: number, items: Queued[]): Promise<void> {
    const fids = items.map((i) => i.fid)
    return pRetry(
      async () => {
        const imp = await this.import(index)
        await this.whileInactive(imp)
        const r = await imp.request('ost_destroy', { fids })
        for (const i of items) i.sent = { imp, transno: r.transno }
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

  /** A page of an OST's objects (see ost_list); fails at once if the OST is not connected. */
  async list(index: number, after: number, count: number): Promise<OpReplies['ost_list']> {
    const imp = await this.import(index)
    if (imp.deactive) throw new LpError('ESHUTDOWN', `${imp.target} is deactivated`)
    return (await imp.request<OpReplies['ost_list']>('ost_list', { after, count }, { noDelay: true })).body
  }

  /** Destroy orphan objects (no llog record: one lost with a crash is found again by the next cleanup). */
  async destroyOrphans(index: number, fids: number[]): Promise<void> {
    const imp = await this.import(index)
    for (let i = 0; i < fids.length; i += MAX_DESTROY_BATCH) await imp.request('ost_destroy', { fids: fids.slice(i, i + MAX_DESTROY_BATCH) }, { noDelay: true })
  }

  async close(): Promise<void> {
    this.abort.abort()
    await Promise.all([...this.imports.values()].map((i) => i.close()))
    await this.client.close()
  }
}

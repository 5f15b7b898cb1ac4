import type { Capa, ObjAttr, OpArgs, OpReplies, StatfsReply } from '../protocol/ops.js'
import type { CapaCache } from './capas.js'
import type { Import, ImportState } from '../ptlrpc/import.js'
import { bulkLength, type Bulk } from '../protocol/wire.js'
import { OscRpcStats } from './stats.js'

/**
 * The object storage client of one OST: one typed call per RPC, and the unstable-bytes
 * budget: writes the OST executed but has not committed stay on the replay list with their
 * data; past the budget a sync makes the OST commit instead of letting them pile up.
 */
export interface OscTunables {
  /** Unstable (kept for replay) bytes allowed per OST before a write forces a sync. */
  maxUnstableBytes: number
}

export class Osc {
  readonly rpcStats = new OscRpcStats()
  private syncing: Promise<void> | null = null

  constructor(
    readonly index: number,
    readonly imp: Import,
    private readonly tun: OscTunables,
    /** The client's OST capabilities (none given: a test's OSC, sending none). */
    private readonly capas?: CapaCache,
  ) {}

  /** `fn` with the capabilities of `fids` (renewed once if the OST refuses them as expired or missing). */
  private capa<T>(fids: readonly number[], fn: (capaOf: (fid: number) => Capa | undefined) => Promise<T>): Promise<T> {
    return this.capas ? this.capas.with(fids, fn) : fn(() => undefined)
  }

  /**
   * `mtime`: the writer's time, which becomes the object's (as Lustre's BRW carries it).
   * `niobufs`: where the pieces of `data` go, when they are not one run from `offset`.
   */
  async write(
    fid: number,
    stripe: number,
    offset: number,
    data: Bulk,
    mtime: number,
    o: { append?: boolean; niobufs?: OpArgs<'ost_write'>['niobufs'] } = {},
  ): Promise<OpReplies['ost_write'] & { transno: number }> {
    await this.throttle()
    const end = this.rpcStats.begin('write', bulkLength(data))
    const r = await this.capa([fid], (capa) => this.imp.request<OpReplies['ost_write']>('ost_write', { fid, stripe, offset, mtime, ...o, capa: capa(fid) }, { bulk: data })).finally(end)
    return { ...r.body, transno: r.transno }
  }

  /** Writers past the unstable budget wait for a commit rather than grow the replay list. */
  private async throttle(): Promise<void> {
    // A closed import commits nothing more: the write goes on, to fail as the closed import fails it.
    while (this.imp.keptBytes >= this.tun.maxUnstableBytes && !this.imp.isClosed()) {
      if (!this.syncing) this.syncing = this.sync().finally(() => (this.syncing = null))
      const before = this.imp.keptBytes
      await this.syncing
      // Under a replay barrier the target commits nothing: wait for the next change instead of spinning.
      if (this.imp.keptBytes >= before) await this.change()
    }
  }

  /** The next commit, invalidation or close of the import: any may end a throttled writer's wait. */
  private change(): Promise<void> {
    const imp = this.imp
    return new Promise((resolve) => {
      const wake = (): void => {
        imp.off('committed', wake)
        imp.off('invalidate', wake)
        imp.off('state', onState)
        resolve()
      }
      const onState = (s: ImportState): void => {
        if (s === 'CLOSED') wake()
      }
      imp.on('committed', wake)
      imp.on('invalidate', wake)
      imp.on('state', onState)
    })
  }

  /**
   * The bytes, in the reply's chunks (fewer than asked where the object ends), and the
   * object's attributes as the OST read them (null: no object; undefined: an older OST).
   */
  async read(fid: number, stripe: number, offset: number, length: number): Promise<{ data: Buffer[]; attr?: ObjAttr | null }> {
    const end = this.rpcStats.begin('read', length)
    const r = await this.capa([fid], (capa) => this.imp.request<OpReplies['ost_read']>('ost_read', { fid, stripe, offset, length, capa: capa(fid) })).finally(end)
    return { data: r.bulk, attr: r.body.attr }
  }

  async punch(fid: number, stripe: number, size: number, mtime: number): Promise<void> {
    await this.capa([fid], (capa) => this.imp.request('ost_punch', { fid, stripe, size, mtime, capa: capa(fid) }))
  }

  async setMtime(fid: number, stripe: number, mtime: number): Promise<void> {
    await this.capa([fid], (capa) => this.imp.request('ost_setattr', { fid, stripe, mtime, capa: capa(fid) }))
  }

  async getattr(objects: Array<{ fid: number; stripe: number }>): Promise<(ObjAttr | null)[]> {
    const fids = objects.map((o) => o.fid)
    return (await this.capa(fids, (capa) => this.imp.request<OpReplies['ost_getattr']>('ost_getattr', { objects: objects.map((o) => ({ ...o, capa: capa(o.fid) })) }))).body.attrs
  }

  async sync(): Promise<void> {
    await this.imp.request('sync', {})
  }

  async statfs(): Promise<StatfsReply & { objects?: number }> {
    return (await this.imp.request<OpReplies['statfs']>('statfs', {}, { noDelay: true })).body
  }
}

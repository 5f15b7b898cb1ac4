import type { DirLayout, FileType, Layout, MdtAttr, OpArgs, OpReplies, StatfsReply } from '../protocol/ops.js'
import type { Import } from '../ptlrpc/import.js'
import type { RequestOptions } from '../ptlrpc/import.js'
import type { RpcReply } from '../ptlrpc/request.js'
import type { Clock } from '../common/clock.js'
import { currentCred } from '../common/cred.js'
import type { Logger } from '../common/log.js'
import { StatsSet } from '../common/stats.js'
import { LpError } from '../protocol/errno.js'
import { CloseBatcher } from './closes.js'

/** Closes wait at most this long for others to leave with (closes.ts), */
export const CLOSE_DELAY_MS = 50
/** and leave at once when this many wait (at most MAX_CLOSE_BATCH). */
export const CLOSE_BATCH = 32

/** mdc.*.md_stats: the MDT RPCs this client asked for, by Lustre's names where it has one. */
const MD_STATS = {
  getattr: 'reqs',
  lookup: 'reqs',
  batch_lookup: 'reqs',
  read_page: 'reqs',
  create: 'reqs',
  setattr: 'reqs',
  link: 'reqs',
  unlink: 'reqs',
  rename: 'reqs',
  open: 'reqs',
  close: 'reqs',
  statfs: 'reqs',
  sync: 'reqs',
} as const

const MD_STAT_OF: Partial<Record<keyof OpReplies, keyof typeof MD_STATS>> = {
  mdt_getattr: 'getattr',
  mdt_lookup: 'lookup',
  mdt_batch_lookup: 'batch_lookup',
  mdt_readdir: 'read_page',
  mdt_create: 'create',
  mdt_setattr: 'setattr',
  mdt_link: 'link',
  mdt_unlink: 'unlink',
  mdt_rename: 'rename',
  mdt_open: 'open',
  mdt_close: 'close',
  statfs: 'statfs',
  sync: 'sync',
}

/** The metadata client: one typed call per MDT RPC. */
export class Mdc {
  readonly mdStats = new StatsSet(MD_STATS)
  private readonly closes: CloseBatcher

  constructor(
    readonly imp: Import,
    o: { clock: Clock; log: Logger },
  ) {
    this.closes = new CloseBatcher((handles) => this.sendCloses(handles, o.log), o.clock, { max: CLOSE_BATCH, delayMs: CLOSE_DELAY_MS })
  }

  private request<O extends keyof OpReplies>(op: O, args: object, opts?: RequestOptions): Promise<RpcReply<OpReplies[O]>> {
    const stat = MD_STAT_OF[op]
    if (stat) this.mdStats.add(stat)
    return this.imp.request<OpReplies[O]>(op, args, opts)
  }

  /** A namespace RPC, as its caller: the MDT checks permissions with the identity it carries. */
  private async as<O extends keyof OpReplies>(op: O, args: object): Promise<OpReplies[O]> {
    const cred = currentCred()
    return (await this.request(op, cred ? { ...args, cred } : args)).body
  }

  /** `handle`: an open of the file here, whose grant its capability then carries (see mdt_getattr). */
  async getattr(fid: number, handle?: string): Promise<MdtAttr> {
    return (await this.as('mdt_getattr', handle === undefined ? { fid } : { fid, handle })).attr
  }

  async lookup(parent: number, name: string): Promise<MdtAttr> {
    return (await this.as('mdt_lookup', { parent, name })).attr
  }

  /** Statahead's batch: the entries of many names of `parent`, null where there is none. */
  async batchLookup(parent: number, names: string[]): Promise<(MdtAttr | null)[]> {
    return (await this.as('mdt_batch_lookup', { parent, names })).attrs
  }

  /** Up to `count` entries after `cookie`; `next`: the cookie the following page starts after (null: the end). */
  readdirPage(fid: number, cookie: number, count: number): Promise<OpReplies['mdt_readdir']> {
    return this.as('mdt_readdir', { fid, cookie, count })
  }

  async create(a: {
    parent: number
    name: string
    type: FileType
    mode: number
    uid: number
    gid: number
    time: number
    target?: string
    rdev?: number
    layout?: Layout
    open_flags?: number
    exclusive?: boolean
  }): Promise<OpReplies['mdt_create']> {
    return this.as('mdt_create', a)
  }

  async setattr(a: OpArgs<'mdt_setattr'>): Promise<MdtAttr> {
    return (await this.as('mdt_setattr', a)).attr
  }

  async setDirLayout(fid: number, dirLayout: DirLayout | null, time: number): Promise<MdtAttr> {
    return this.setattr({ fid, dir_layout: dirLayout, ctime: time })
  }

  async link(fid: number, parent: number, name: string, time: number): Promise<OpReplies['mdt_link']> {
    return this.as('mdt_link', { fid, parent, name, time })
  }

  /** Remove `name`, which must name `fid` when given (the MDT answers ESTALE when it names another inode now). */
  async unlink(parent: number, name: string, dir: boolean, time: number, fid?: number): Promise<OpReplies['mdt_unlink']> {
    const args: OpArgs<'mdt_unlink'> = { parent, name, dir, time }
    if (fid !== undefined) args.fid = fid
    return this.as('mdt_unlink', args)
  }

  /** Move `name`, which must name `fid` when given; `newFid`, when given, is the inode `newName` must name to be replaced (ESTALE otherwise). */
  async rename(
    parent: number,
    name: string,
    newParent: number,
    newName: string,
    time: number,
    o: { fid?: number; newFid?: number; noreplace?: boolean } = {},
  ): Promise<OpReplies['mdt_rename']> {
    const args: OpArgs<'mdt_rename'> = { parent, name, new_parent: newParent, new_name: newName, time }
    if (o.fid !== undefined) args.fid = o.fid
    if (o.newFid !== undefined) args.new_fid = o.newFid
    if (o.noreplace) args.noreplace = true
    return this.as('mdt_rename', args)
  }

  async open(fid: number, flags: number): Promise<OpReplies['mdt_open']> {
    return this.as('mdt_open', { fid, flags })
  }

  /** The MDT forgets an open: the handle leaves with the next batch of closes. */
  close(handle: string): void {
    this.closes.add(handle)
  }

  /** Sends the closes waiting; settles once every close sent is answered (unmount). */
  flushCloses(): Promise<void> {
    return this.closes.flush()
  }

  private async sendCloses(handles: string[], log: Logger): Promise<void> {
    try {
      await this.request('mdt_close', { handles })
    } catch (e) {
      // Evicted (the MDT dropped our opens) or unmounting (a disconnect drops them): nothing is left to close.
      if (!(e instanceof LpError && (e.code === 'EIO' || e.code === 'ESHUTDOWN')))
        log.warn({ target: this.imp.target, err: (e as Error).message }, `${this.imp.target}: closing ${handles.length} open handles failed`)
    }
  }

  async statfs(): Promise<StatfsReply & { objects?: number }> {
    return (await this.request('statfs', {}, { noDelay: true })).body
  }

  /** Commit the MDT (fsync of a directory, and of a file's metadata). */
  async sync(): Promise<void> {
    await this.request('sync', {})
  }
}

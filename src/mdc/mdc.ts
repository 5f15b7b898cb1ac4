import type { DirEntry, DirLayout, FileType, Layout, MdtAttr, OpArgs, OpReplies, StatfsReply } from '../protocol/ops.js'
import type { Import } from '../ptlrpc/import.js'
import { currentCred } from '../common/cred.js'

/** The metadata client: one typed call per MDT RPC. */
export class Mdc {
  constructor(readonly imp: Import) {}

  /** A namespace RPC, as its caller: the MDT checks permissions with the identity it carries. */
  private async as<O extends keyof OpReplies>(op: O, args: object): Promise<OpReplies[O]> {
    const cred = currentCred()
    return (await this.imp.request<OpReplies[O]>(op, cred ? { ...args, cred } : args)).body
  }

  async getattr(fid: number): Promise<MdtAttr> {
    return (await this.as('mdt_getattr', { fid })).attr
  }

  async lookup(parent: number, name: string): Promise<MdtAttr> {
    return (await this.as('mdt_lookup', { parent, name })).attr
  }

  /** Statahead's batch: the entries of many names of `parent`, null where there is none. */
  async batchLookup(parent: number, names: string[]): Promise<(MdtAttr | null)[]> {
    return (await this.as('mdt_batch_lookup', { parent, names })).attrs
  }

  /** Every entry of a directory, page by page. */
  async readdir(fid: number, pageSize = 1000): Promise<DirEntry[]> {
    const all: DirEntry[] = []
    let cookie = 0
    for (;;) {
      const r = await this.as('mdt_readdir', { fid, cookie, count: pageSize })
      all.push(...r.entries)
      if (r.next === null) return all
      cookie = r.next
    }
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

  async close(handle: string): Promise<void> {
    await this.imp.request('mdt_close', { handle })
  }

  async statfs(): Promise<StatfsReply & { objects?: number }> {
    return (await this.imp.request<OpReplies['statfs']>('statfs', {}, { noDelay: true })).body
  }

  /** Commit the MDT (fsync of a directory, and of a file's metadata). */
  async sync(): Promise<void> {
    await this.imp.request('sync', {})
  }
}

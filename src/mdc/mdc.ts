import type { DirEntry, DirLayout, FileType, Layout, MdtAttr, OpArgs, OpReplies, StatfsReply } from '../protocol/ops.js'
import type { Import } from '../ptlrpc/import.js'

/** The metadata client: one typed call per MDT RPC. */
export class Mdc {
  constructor(readonly imp: Import) {}

  async getattr(fid: number): Promise<MdtAttr> {
    return (await this.imp.request<OpReplies['mdt_getattr']>('mdt_getattr', { fid })).body.attr
  }

  async lookup(parent: number, name: string): Promise<MdtAttr> {
    return (await this.imp.request<OpReplies['mdt_lookup']>('mdt_lookup', { parent, name })).body.attr
  }

  /** Statahead's batch: the entries of many names of `parent`, null where there is none. */
  async batchLookup(parent: number, names: string[]): Promise<(MdtAttr | null)[]> {
    return (await this.imp.request<OpReplies['mdt_batch_lookup']>('mdt_batch_lookup', { parent, names })).body.attrs
  }

  /** Every entry of a directory, page by page. */
  async readdir(fid: number, pageSize = 1000): Promise<DirEntry[]> {
    const all: DirEntry[] = []
    let cookie = 0
    for (;;) {
      const r = (await this.imp.request<OpReplies['mdt_readdir']>('mdt_readdir', { fid, cookie, count: pageSize })).body
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
    return (await this.imp.request<OpReplies['mdt_create']>('mdt_create', a)).body
  }

  async setattr(a: OpArgs<'mdt_setattr'>): Promise<MdtAttr> {
    return (await this.imp.request<OpReplies['mdt_setattr']>('mdt_setattr', a)).body.attr
  }

  async setDirLayout(fid: number, dirLayout: DirLayout | null, time: number): Promise<MdtAttr> {
    return this.setattr({ fid, dir_layout: dirLayout, ctime: time })
  }

  async link(fid: number, parent: number, name: string, time: number): Promise<OpReplies['mdt_link']> {
    return (await this.imp.request<OpReplies['mdt_link']>('mdt_link', { fid, parent, name, time })).body
  }

  /** Remove `name`, which must name `fid` when given (the MDT answers ESTALE when it names another inode now). */
  async unlink(parent: number, name: string, dir: boolean, time: number, fid?: number): Promise<OpReplies['mdt_unlink']> {
    const args: OpArgs<'mdt_unlink'> = { parent, name, dir, time }
    if (fid !== undefined) args.fid = fid
    return (await this.imp.request<OpReplies['mdt_unlink']>('mdt_unlink', args)).body
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
    return (await this.imp.request<OpReplies['mdt_rename']>('mdt_rename', args)).body
  }

  async open(fid: number, flags: number): Promise<OpReplies['mdt_open']> {
    return (await this.imp.request<OpReplies['mdt_open']>('mdt_open', { fid, flags })).body
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

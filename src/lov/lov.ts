import { copyFrom, totalLength } from '../common/chunks.js'
import { LpError } from '../protocol/errno.js'
import { MAX_GLIMPSE_OBJECTS, type DirLayout, type GrantedLayout, type Layout, type ObjAttr, type StatfsReply } from '../protocol/ops.js'
import type { CapaCache } from '../osc/capas.js'
import type { Osc } from '../osc/osc.js'
import type { OscWriteback } from '../osc/writeback.js'
import { fileSizeFrom, mapExtent, objectSizeFor, stripesByOst } from './layout.js'

/**
 * The logical object volume: places new files on the OSTs (round-robin over the active ones,
 * honouring a directory's default layout) and turns file I/O into object I/O.
 */
export const DEFAULT_STRIPE_SIZE = 1024 * 1024

export interface Glimpse {
  size: number
  blocks: number
  mtime: number
}

/** A file's glimpse from its objects' attributes, one per stripe (null: no object, or on a failed-out OST). */
function glimpseOf(layout: Layout, attrs: Array<ObjAttr | null>): Glimpse {
  let blocks = 0
  let mtime = 0
  for (const a of attrs) {
    blocks += a?.blocks ?? 0
    mtime = Math.max(mtime, a?.mtime ?? 0)
  }
  return { size: fileSizeFrom(layout, attrs.map((a) => a?.size ?? null)), blocks, mtime }
}

/** A layout naming an OST this client was not configured with is an I/O error, not a crash. */
function configured<T>(m: Map<number, T>, index: number): T {
  const v = m.get(index)
  if (v === undefined) throw new LpError('EIO', `OST index ${index} is not configured on this client`)
  return v
}

export class Lov {
  private rr = 0

  constructor(
    readonly oscs: Map<number, Osc>,
    readonly caches: Map<number, OscWriteback>,
    /** Where the OSCs find the capabilities that come with layouts (keyed filesystems). */
    private readonly capas?: CapaCache,
  ) {}

  /** The file's capability, from the layout the MDT handed out, for its OST requests. */
  private note(fid: number, layout: GrantedLayout): void {
    this.capas?.note(fid, layout.capa)
  }

  osc(index: number): Osc {
    return configured(this.oscs, index)
  }

  private wb(index: number): OscWriteback {
    return configured(this.caches, index)
  }

  /** Some stripe of the layout is on an OST this client lost (deactivated, failed out, evicted): its size and bytes are unknown. */
  lost(layout: Layout): boolean {
    return layout.osts.some((ost) => this.oscs.get(ost)?.imp.invalid ?? true)
  }

  /** Usable for new files: not deactivated, not failed out. */
  private placeable(o: Osc): boolean {
    return !o.imp.deactive && !o.imp.invalid
  }

  /** Choose a layout for a new file (Lustre's QOS round-robin, reduced to its essentials). */
  chooseLayout(dl: DirLayout | undefined): Layout {
    const all = [...this.oscs.values()].sort((a, b) => a.index - b.index)
    const usable = all.filter((o) => this.placeable(o))
    if (!usable.length) throw new LpError('ENOSPC', 'no active OST to place a new file on')
    // OSTs that answer right now come first, so a down OST does not stall new files.
    const ready = usable.filter((o) => o.imp.state === 'FULL')
    const pool = ready.length ? [...ready, ...usable.filter((o) => o.imp.state !== 'FULL')] : usable
    const want = dl?.stripe_count ?? 1
    const count = want === -1 ? usable.length : Math.min(want, usable.length)
    const fixed = dl && dl.stripe_offset >= 0 ? pool.findIndex((o) => o.index === dl.stripe_offset) : -1
    // Round-robin the first stripe over the ready OSTs; further stripes follow in pool order.
    const start = fixed >= 0 ? fixed : this.rr++ % (ready.length || pool.length)
    const osts: number[] = []
    for (let k = 0; osts.length < count; k++) osts.push(pool[(start + k) % pool.length]!.index)
    return { stripe_size: dl?.stripe_size ?? DEFAULT_STRIPE_SIZE, osts }
  }

  /** Write a file range into the write-back caches of its objects' OSTs. */
  async write(fid: number, layout: GrantedLayout, off: number, data: Buffer, mtime: number): Promise<void> {
    this.note(fid, layout)
    for (const e of mapExtent(layout, off, data.length))
      await this.wb(e.ost).write(fid, e.stripe, e.objOff, data.subarray(e.fileOff - off, e.fileOff - off + e.len), mtime)
  }

  /** Send everything cached for the file; resolves once it reached the OSTs (or failed). */
  async flush(fid: number, layout: Layout): Promise<void> {
    await Promise.all([...stripesByOst(layout).keys()].map((ost) => this.wb(ost).flush(fid)))
  }

  /** The first write-back error of the file on any of its OSTs (reported once). */
  takeError(fid: number, layout: Layout): LpError | undefined {
    let first: LpError | undefined
    for (const ost of stripesByOst(layout).keys()) first ??= this.wb(ost).takeError(fid)
    return first
  }

  /** The file size its cached (not yet written back) bytes imply. */
  cachedSize(fid: number, layout: Layout): number {
    return fileSizeFrom(layout, layout.osts.map((ost, stripe) => this.wb(ost).cachedEnd(fid, stripe) || null))
  }

  /** O_APPEND on a single-stripe file is resolved on the OST: returns where the data landed. */
  async append(fid: number, layout: GrantedLayout, data: Buffer, mtime: number): Promise<number> {
    this.note(fid, layout)
    if (layout.osts.length !== 1) throw new LpError('EINVAL', 'OST-side append needs a single stripe')
    await this.flush(fid, layout)
    return (await this.osc(layout.osts[0]!).write(fid, 0, 0, data, mtime, { append: true })).offset
  }

  /**
   * Read a file range; holes read as zeros. The data comes in pieces (a single object's
   * reply is passed on in the chunks it arrived in, never joined). `complete` tells whether
   * every object had every byte asked of it (when not, the caller checks the file size for
   * the end of the file).
   */
  async read(fid: number, layout: GrantedLayout, off: number, len: number): Promise<{ data: Buffer[]; complete: boolean }> {
    this.note(fid, layout)
    const extents = mapExtent(layout, off, len)
    const only = extents.length === 1 ? extents[0]! : null
    if (only && !this.wb(only.ost).cachedEnd(fid, only.stripe)) {
      const got = (await this.osc(only.ost).read(fid, only.stripe, only.objOff, only.len)).data
      const short = len - totalLength(got)
      return short ? { data: [...got, Buffer.alloc(short)], complete: false } : { data: got, complete: true }
    }
    const buf = Buffer.alloc(len)
    const parts = await Promise.all(
      extents.map(async (e) => {
        const wb = this.wb(e.ost)
        const piece = buf.subarray(e.fileOff - off, e.fileOff - off + e.len)
        // Read-your-writes: bytes still in the write-back cache are the newest.
        if (wb.covers(fid, e.stripe, e.objOff, e.len)) {
          wb.overlay(fid, e.stripe, e.objOff, piece)
          return true
        }
        const got = (await this.osc(e.ost).read(fid, e.stripe, e.objOff, e.len)).data
        const n = totalLength(got)
        copyFrom(got, piece, 0, 0, n)
        wb.overlay(fid, e.stripe, e.objOff, piece)
        return n === e.len || wb.covers(fid, e.stripe, e.objOff + n, e.len - n)
      }),
    )
    return { data: [buf], complete: parts.every(Boolean) }
  }

  /**
   * A file's first `len` bytes (at most its first stripe's) and its glimpse, with one RPC per
   * OST as a glimpse: the first stripe's ost_read, whose reply says what ost_getattr would, and
   * the other stripes' ost_getattr. A small file is then read whole with its open. Undefined
   * where that cannot be (bytes of its own in the write-back cache, an OST too old to say):
   * the caller glimpses.
   */
  async readHead(fid: number, layout: GrantedLayout, len: number): Promise<{ data: Buffer[]; glimpse: Glimpse } | undefined> {
    if (this.cachedSize(fid, layout)) return undefined
    this.note(fid, layout)
    const [first, ...others] = layout.osts
    const [head, rest] = await Promise.all([
      this.osc(first!).read(fid, 0, 0, Math.min(len, layout.stripe_size)),
      Promise.all(others.map(async (ost, i) => (await this.osc(ost).getattr([{ fid, stripe: i + 1 }]))[0] ?? null)),
    ])
    if (head.attr === undefined) return undefined
    return { data: head.data, glimpse: glimpseOf(layout, [head.attr, ...rest]) }
  }

  /** File size from its objects. */
  async glimpse(fid: number, layout: GrantedLayout): Promise<Glimpse> {
    return (await this.glimpseMany([{ fid, layout }]))[0]!
  }

  /**
   * Sizes of many files from their objects, one ost_getattr per OST for all of them
   * (statahead's batch). Stripes on deactivated or failed-out OSTs count as empty (decided
   * question 3); on a down OST in failover mode this waits like any request.
   */
  async glimpseMany(files: Array<{ fid: number; layout: GrantedLayout }>): Promise<Glimpse[]> {
    for (const f of files) this.note(f.fid, f.layout)
    const attrs = files.map((f) => f.layout.osts.map((): ObjAttr | null => null))
    const byOst = new Map<number, Array<{ file: number; stripe: number }>>()
    files.forEach((f, file) =>
      f.layout.osts.forEach((ost, stripe) => {
        let l = byOst.get(ost)
        if (!l) byOst.set(ost, (l = []))
        l.push({ file, stripe })
      }),
    )
    await Promise.all(
      [...byOst].map(async ([ost, objs]) => {
        for (let at = 0; at < objs.length; at += MAX_GLIMPSE_OBJECTS) {
          const part = objs.slice(at, at + MAX_GLIMPSE_OBJECTS)
          let got
          try {
            got = await this.osc(ost).getattr(part.map((o) => ({ fid: files[o.file]!.fid, stripe: o.stripe })))
          } catch (e) {
            if (e instanceof LpError && (e.code === 'ESHUTDOWN' || e.code === 'EIO') && this.osc(ost).imp.invalid) return
            throw e
          }
          got.forEach((a, k) => (attrs[part[k]!.file]![part[k]!.stripe] = a))
        }
      }),
    )
    return files.map((f, i) => glimpseOf(f.layout, attrs[i]!))
  }

  /** Truncate (or extend) every object to its share of `size`. */
  async truncate(fid: number, layout: GrantedLayout, size: number, mtime: number): Promise<void> {
    this.note(fid, layout)
    await Promise.all(layout.osts.map((ost, stripe) => this.osc(ost).punch(fid, stripe, objectSizeFor(layout, stripe, size), mtime)))
  }

  async setMtime(fid: number, layout: GrantedLayout, mtime: number): Promise<void> {
    this.note(fid, layout)
    await Promise.all(layout.osts.map((ost, stripe) => this.osc(ost).setMtime(fid, stripe, mtime)))
  }

  /** Commit the file's data on every OST it has a stripe on. */
  async sync(layout: Layout): Promise<void> {
    await Promise.all([...stripesByOst(layout).keys()].map((ost) => this.osc(ost).sync()))
  }

  /** statfs of every OST that answers now (df does not wait for a down OST). */
  async statfs(): Promise<Array<{ index: number; statfs: StatfsReply | null }>> {
    return Promise.all(
      [...this.oscs.values()].map(async (o) => ({ index: o.index, statfs: await o.statfs().catch(() => null) })),
    )
  }
}

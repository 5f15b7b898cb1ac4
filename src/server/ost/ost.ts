import { copyFrom, slice } from '../../common/chunks.js'
import { LpError } from '../../protocol/errno.js'
import { bulkLength } from '../../protocol/wire.js'
import { MAX_FILE_SIZE, type ObjAttr, type OpArgs } from '../../protocol/ops.js'
import type { Applied, Backend, OpContext, QueryResult, Redo } from '../target/backend.js'
import { fsStatfs } from '../statfs.js'
import { ObjectStore, objKey } from './store.js'
import type { Fence } from '../target/mmp.js'

/**
 * The object storage target. Executed changes are kept per object as an ordered list of
 * uncommitted operations over the committed file (the journal holds their data once
 * committed); a read folds that list over the file's bytes, so every later request sees
 * every earlier change, committed or not.
 */
type PendingOp =
  | { k: 'w'; off: number; data: Buffer[]; len: number; mt: number }
  | { k: 't'; size: number; mt: number }
  | { k: 'm'; mt: number }
  | { k: 'd' }

interface Overlay {
  ops: PendingOp[]
  /** The object as the last pending op leaves it. */
  exists: boolean
  size: number
  mtime: number
}

type OstRedo =
  | { k: 'w'; fid: number; stripe: number; off: number; mt: number }
  | { k: 't'; fid: number; stripe: number; size: number; mt: number }
  | { k: 'm'; fid: number; stripe: number; mt: number }
  | { k: 'd'; fid: number }

export class OstBackend implements Backend {
  private readonly store: ObjectStore
  private readonly overlays = new Map<string, Overlay>()
  /** fid -> stripes with pending ops, so a destroy by fid finds uncommitted objects too. */
  private readonly pendingByFid = new Map<number, Set<number>>()

  constructor(
    private readonly dir: string,
    fence?: Fence,
  ) {
    this.store = new ObjectStore(dir, fence)
  }

  async load(): Promise<void> {
    await this.store.load()
  }

  async redo(rec: Record<string, unknown>, data: Buffer): Promise<void> {
    await this.applyToStore(rec as unknown as OstRedo, [data])
  }

  private async applyToStore(r: OstRedo, data: readonly Buffer[]): Promise<void> {
    if (r.k === 'w') await this.store.write(r.fid, r.stripe, r.off, data, r.mt)
    else if (r.k === 't') await this.store.truncate(r.fid, r.stripe, r.size, r.mt)
    else if (r.k === 'm') await this.store.setMtime(r.fid, r.stripe, r.mt)
    else await this.store.destroy(r.fid)
  }

  /** The object's current state: the last pending op's, else the committed file's. */
  private current(fid: number, stripe: number): { exists: boolean; size: number; mtime: number } {
    const key = objKey(fid, stripe)
    const ov = this.overlays.get(key)
    if (ov) return ov
    const st = this.store.objects.get(key)
    return st ? { exists: true, size: st.size, mtime: st.mtime } : { exists: false, size: 0, mtime: 0 }
  }

  private push(fid: number, stripe: number, op: PendingOp): void {
    const key = objKey(fid, stripe)
    const cur = this.current(fid, stripe)
    let ov = this.overlays.get(key)
    if (!ov) this.overlays.set(key, (ov = { ops: [], ...cur }))
    ov.ops.push(op)
    if (op.k === 'w') {
      // A write of nothing creates the object but extends nothing (as write(2)).
      ov.size = Math.max(ov.exists ? ov.size : 0, op.len ? op.off + op.len : 0)
      ov.exists = true
      ov.mtime = op.mt
    } else if (op.k === 't') {
      ov.size = op.size
      ov.exists = true
      ov.mtime = op.mt
    } else if (op.k === 'm') {
      ov.mtime = op.mt
    } else {
      ov.exists = false
      ov.size = 0
    }
    let s = this.pendingByFid.get(fid)
    if (!s) this.pendingByFid.set(fid, (s = new Set()))
    s.add(stripe)
  }

  apply(op: string, args: unknown, ctx: OpContext): Applied {
    switch (op) {
      case 'ost_write': {
        const a = args as OpArgs<'ost_write'>
        const len = bulkLength(ctx.bulk)
        const off = a.append ? this.current(a.fid, a.stripe).size : a.offset
        const frags = a.niobufs ?? [{ offset: off, length: len }]
        const last = frags[frags.length - 1]!
        if (frags.reduce((n, f) => n + f.length, 0) !== len) throw new LpError('EINVAL', `the niobufs describe other than the ${len} bytes of bulk`)
        if (last.offset + last.length > MAX_FILE_SIZE) throw new LpError('EFBIG', `write past the maximum object size ${MAX_FILE_SIZE}`)
        const mt = a.mtime ?? ctx.now
        // One pending op and one journal record per fragment, as if each had come alone.
        let at = 0
        const redo = frags.map((f): Redo => {
          const data = slice(ctx.bulk, at, (at += f.length))
          const p: PendingOp = { k: 'w', off: f.offset, data, len: f.length, mt }
          this.push(a.fid, a.stripe, p)
          const rec: OstRedo = { k: 'w', fid: a.fid, stripe: a.stripe, off: f.offset, mt }
          return { rec, data, ref: [objKey(a.fid, a.stripe), p] }
        })
        return { body: { offset: off, size: this.current(a.fid, a.stripe).size }, redo }
      }
      case 'ost_punch': {
        const a = args as OpArgs<'ost_punch'>
        const mt = a.mtime ?? ctx.now
        const p: PendingOp = { k: 't', size: a.size, mt }
        this.push(a.fid, a.stripe, p)
        const rec: OstRedo = { k: 't', fid: a.fid, stripe: a.stripe, size: a.size, mt }
        return { body: {}, redo: [{ rec, ref: [objKey(a.fid, a.stripe), p] }] }
      }
      case 'ost_setattr': {
        const a = args as OpArgs<'ost_setattr'>
        // An object not written yet has no time of its own to set.
        if (!this.current(a.fid, a.stripe).exists) return { body: {}, redo: [] }
        const p: PendingOp = { k: 'm', mt: a.mtime }
        this.push(a.fid, a.stripe, p)
        const rec: OstRedo = { k: 'm', fid: a.fid, stripe: a.stripe, mt: a.mtime }
        return { body: {}, redo: [{ rec, ref: [objKey(a.fid, a.stripe), p] }] }
      }
      case 'ost_destroy': {
        const redo = (args as OpArgs<'ost_destroy'>).fids.map((fid): Redo => {
          const stripes = new Set([...(this.store.byFid.get(fid) ?? []), ...(this.pendingByFid.get(fid) ?? [])])
          const refs: Array<[string, PendingOp]> = []
          for (const stripe of stripes) {
            const p: PendingOp = { k: 'd' }
            this.push(fid, stripe, p)
            refs.push([objKey(fid, stripe), p])
          }
          const rec: OstRedo = { k: 'd', fid }
          return { rec, ref: refs }
        })
        return { body: {}, redo }
      }
      default:
        throw new LpError('EOPNOTSUPP', `OST does not modify with '${op}'`)
    }
  }

  async query(op: string, args: unknown): Promise<QueryResult> {
    switch (op) {
      case 'ost_read': {
        const a = args as OpArgs<'ost_read'>
        return this.read(a.fid, a.stripe, a.offset, a.length)
      }
      case 'ost_getattr': {
        const a = args as OpArgs<'ost_getattr'>
        const attrs: (ObjAttr | null)[] = a.objects.map((o) => {
          const c = this.current(o.fid, o.stripe)
          return c.exists ? { size: c.size, blocks: Math.ceil(c.size / 512), mtime: c.mtime } : null
        })
        return { body: { attrs } }
      }
      case 'statfs': {
        const s = await fsStatfs(this.dir)
        let objects = this.store.objects.size
        for (const [key, ov] of this.overlays) objects += (ov.exists ? 1 : 0) - (this.store.objects.has(key) ? 1 : 0)
        return { body: { ...s, objects } }
      }
      default:
        throw new LpError('EOPNOTSUPP', `OST does not answer '${op}'`)
    }
  }

  private async read(fid: number, stripe: number, offset: number, length: number): Promise<QueryResult> {
    const key = objKey(fid, stripe)
    // Take the pending ops before reading the file: a commit applying some of them meanwhile
    // only writes the same bytes we fold in again.
    const ops = [...(this.overlays.get(key)?.ops ?? [])]
    const cur = this.current(fid, stripe)
    const n = Math.max(0, Math.min(length, cur.size - offset))
    const buf = Buffer.alloc(n)
    if (n === 0) return { body: { length: 0 }, bulk: buf }
    await this.store.read(fid, stripe, offset, buf)
    const end = offset + n
    for (const op of ops) {
      if (op.k === 'w') {
        const from = Math.max(offset, op.off)
        const to = Math.min(end, op.off + op.len)
        if (from < to) copyFrom(op.data, buf, from - offset, from - op.off, to - op.off)
      } else if (op.k === 't') {
        if (op.size < end) buf.fill(0, Math.max(0, op.size - offset))
      } else if (op.k === 'd') buf.fill(0)
    }
    return { body: { length: n }, bulk: buf }
  }

  dropClient(): Redo[] {
    return []
  }

  async afterCommit(redo: Redo[]): Promise<void> {
    const done = new Map<string, Set<PendingOp>>()
    for (const r of redo) {
      await this.applyToStore(r.rec as unknown as OstRedo, r.data ?? [])
      for (const [key, p] of (r.rec.k === 'd' ? r.ref : [r.ref]) as Array<[string, PendingOp]>) {
        let s = done.get(key)
        if (!s) done.set(key, (s = new Set()))
        s.add(p)
      }
    }
    // Retired once the batch is in the files, each object's in one pass: a scattered writer
    // leaves tens of thousands of ops on one object. A read until then folds them over bytes
    // that already hold them, which changes nothing.
    for (const [key, ops] of done) this.retire(key, ops)
  }

  /** Pending ops reached the file: drop them. */
  private retire(key: string, done: Set<PendingOp>): void {
    const ov = this.overlays.get(key)
    if (!ov) return
    ov.ops = ov.ops.filter((p) => !done.has(p))
    if (ov.ops.length) return
    this.overlays.delete(key)
    const fid = Number(key.slice(0, key.indexOf('.')))
    const stripe = Number(key.slice(key.indexOf('.') + 1))
    const s = this.pendingByFid.get(fid)
    s?.delete(stripe)
    if (s && !s.size) this.pendingByFid.delete(fid)
  }

  snapshot(): unknown {
    return null
  }

  async persist(): Promise<unknown> {
    await this.store.syncAll()
    return null
  }

  async afterCheckpoint(): Promise<void> {}

  async close(): Promise<void> {
    await this.store.close()
  }
}

import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { z } from 'zod'
import { LRUCache } from 'lru-cache'
import { copyFrom, slice } from '../../common/chunks.js'
import { readJson, writeFileAtomic } from '../../common/fsutil.js'
import { LpError } from '../../protocol/errno.js'
import { bulkLength } from '../../protocol/wire.js'
import { checkCapa } from '../../protocol/capa.js'
import { MAX_FILE_SIZE, fidSchema, preVersionsSchema, type Capa, type ObjAttr, type OpArgs, type OstListEntry, type PreVersions } from '../../protocol/ops.js'
import type { Applied, Backend, OpContext, QueryResult, Redo } from '../target/backend.js'
import { fsStatfs } from '../statfs.js'
import { ObjectStore, objKey } from './store.js'
import type { Fence } from '../target/mmp.js'

/**
 * Destroyed FIDs remembered, so that a write or punch arriving after a destroy (a resend, a
 * client that cached the layout and was evicted from the MDT meanwhile) is refused instead of
 * re-creating the object. They are needed only as long as such a late request can still come:
 * the MDT sends a destroy once the unlink is committed and the file's last open is closed,
 * so what is left is a request already in flight, or one from a client the MDT evicted, which
 * the OST itself evicts within 1.5 obd_timeout of its silence. The newest 65536 destroys cover
 * that window for any realistic rate of removal (over a minute of rm -r at 1000 files/s on one
 * OST), at ~1.5 MB in the checkpointed index. Should one come later still, the object it makes
 * is an orphan: the next orphan cleanup (on the MDT's reconnect) or lfsck removes it.
 */
export const MAX_TOMBSTONES = 65536

const u = z.number().int().min(0)
const stripe = z.number().int().min(0).max(63)
/** Journal records, as read back at start (written by this file; checked all the same). */
const redoSchema = z.discriminatedUnion('k', [
  z.object({ k: z.literal('w'), fid: fidSchema, stripe, off: u, mt: z.number(), t: u.default(0) }),
  z.object({ k: z.literal('t'), fid: fidSchema, stripe, size: u, mt: z.number(), t: u.default(0) }),
  z.object({ k: z.literal('m'), fid: fidSchema, stripe, mt: z.number(), t: u.default(0) }),
  z.object({ k: z.literal('d'), fid: fidSchema, t: u.default(0) }),
])

/** The checkpointed index: each object's version, and the destroyed FIDs oldest first. */
const indexSchema = z.object({
  versions: z.array(z.tuple([z.string().regex(/^\d+\.\d+$/), u])),
  tombs: z.array(z.tuple([fidSchema, u])),
})
type OstIndex = z.infer<typeof indexSchema>
const indexRefSchema = z.object({ index: z.string().regex(/^index-\d+\.json$/) }).nullish()

/** What a replay sends back of its original reply, checked: a client may forge it. */
const replayedSchema = z.object({ pre_versions: preVersionsSchema.optional(), offset: u.max(MAX_FILE_SIZE).optional() }).passthrough()

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

/** `t`: the transno of the change, the object's version after it. */
type OstRedo = z.infer<typeof redoSchema>

export class OstBackend implements Backend {
  private readonly store: ObjectStore
  private readonly overlays = new Map<string, Overlay>()
  /** fid -> stripes with pending ops, so a destroy by fid finds uncommitted objects too. */
  private readonly pendingByFid = new Map<number, Set<number>>()
  /** Each object's version as executed (committed or not): the transno of its last change. */
  private readonly versions = new Map<string, number>()
  /**
   * Destroyed FIDs -> the destroy's transno, the oldest destroy forgotten past MAX_TOMBSTONES.
   * Read with peek(), so that their order stays the destroys'. (A Map emptied from its front
   * walks the holes it leaves: 29 us per destroy past 65,536 tombstones.)
   */
  private readonly tombs = new LRUCache<number, number>({ max: MAX_TOMBSTONES })

  constructor(
    private readonly dir: string,
    private readonly fence?: Fence,
    private readonly name = 'OST',
    /** On a filesystem with a shared key: the capability key every object access is checked with. */
    private readonly capaKey?: Buffer,
  ) {
    this.store = new ObjectStore(dir, fence)
  }

  async load(checkpoint?: unknown): Promise<void> {
    await this.store.load()
    const ref = indexRefSchema.safeParse(checkpoint)
    if (!ref.success) throw new LpError('EUCLEAN', `${this.name}: the checkpoint's OST index reference is malformed`)
    if (!ref.data) return
    const file = path.join(this.dir, ref.data.index)
    const idx = indexSchema.safeParse(await readJson(file))
    if (!idx.success) throw new LpError('EUCLEAN', `${this.name}: ${file} is missing or malformed: ${idx.error.issues[0]?.message ?? ''}`)
    for (const [key, v] of idx.data.versions) this.versions.set(key, v)
    for (const [fid, t] of idx.data.tombs) this.tombs.set(fid, t)
  }

  async redo(rec: Record<string, unknown>, data: Buffer): Promise<void> {
    const parsed = redoSchema.safeParse(rec)
    if (!parsed.success) throw new LpError('EUCLEAN', `${this.name}: malformed journal record ${JSON.stringify(rec).slice(0, 200)}: ${parsed.error.issues[0]?.message ?? ''}`)
    const r = parsed.data
    if (r.k === 'd') this.forget(r.fid, this.store.byFid.get(r.fid) ?? [], r.t)
    else this.versions.set(objKey(r.fid, r.stripe), r.t)
    await this.applyToStore(r, [data])
  }

  /** An object's version: its last change's transno; a destroyed one's, the destroy's; 0 if never there. */
  private version(fid: number, stripe: number): number {
    return this.versions.get(objKey(fid, stripe)) ?? this.tombs.peek(fid) ?? 0
  }

  /** A destroy: the objects' versions go, the FID is remembered as destroyed (the oldest forgotten past the bound). */
  private forget(fid: number, stripes: Iterable<number>, transno: number): void {
    for (const s of stripes) this.versions.delete(objKey(fid, s))
    this.tombs.set(fid, transno)
  }

  /**
   * The versions a request finds on the objects it changes; on a replay they must be the
   * ones its original execution found (VBR), else EOVERFLOW with nothing changed.
   */
  private preVersions(ctx: OpContext, objs: Array<[number, number]>, fids = new Set(objs.map(([fid]) => fid))): PreVersions {
    const pre: PreVersions = {}
    for (const [fid, s] of objs) pre[objKey(fid, s)] = this.version(fid, s)
    const want = this.replayed(ctx)?.pre_versions
    if (!want) return pre
    const mismatch = (key: string, expect: number, have: number) =>
      new LpError('EOVERFLOW', `${this.name}: version mismatch on ${key}: replay expects ${expect}, object has ${have}`)
    for (const [key, have] of Object.entries(pre)) if ((want[key] ?? 0) !== have) throw mismatch(key, want[key] ?? 0, have)
    // An object of the request that the original execution found and that is gone now.
    for (const [key, expect] of Object.entries(want)) {
      const m = /^(\d+)\.(\d+)$/.exec(key)
      if (key in pre || !m || !fids.has(Number(m[1]))) continue
      const have = this.version(Number(m[1]), Number(m[2]))
      if (have !== expect) throw mismatch(key, expect, have)
    }
    return pre
  }

  private replayed(ctx: OpContext): z.infer<typeof replayedSchema> | undefined {
    if (ctx.replayReply === undefined) return undefined
    const r = replayedSchema.safeParse(ctx.replayReply)
    if (!r.success) throw new LpError('EPROTO', `${this.name}: the replayed reply is malformed`)
    return r.data
  }

  /** A write or punch must not bring a destroyed object back. */
  private refuseDestroyed(fid: number, stripe: number): void {
    const t = this.tombs.peek(fid)
    if (t !== undefined) throw new LpError('ENOENT', `${this.name}: object ${objKey(fid, stripe)} was destroyed (transno ${t})`)
  }

  private async applyToStore(r: OstRedo, data: readonly Buffer[]): Promise<void> {
    // (The version `t` is the index's business: the store keeps bytes and times only.)
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

  /** What a glimpse learns of an object, as of now: null if there is none. */
  private attrOf(fid: number, stripe: number): ObjAttr | null {
    const c = this.current(fid, stripe)
    return c.exists ? { size: c.size, blocks: Math.ceil(c.size / 512), mtime: c.mtime } : null
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

  /** A keyed OST serves an object only to the client the MDT granted it (protocol/capa.ts). */
  private admit(op: string, args: unknown, ctx: OpContext): void {
    if (!this.capaKey) return
    const objs = op === 'ost_getattr' ? (args as OpArgs<'ost_getattr'>).objects : [args as { fid: number; capa?: Capa }]
    const checked = new Set<number>()
    for (const o of objs) {
      if (checked.has(o.fid)) continue
      checkCapa(this.capaKey, o.capa, o.fid, ctx.client, op, ctx.now, ctx.replayReply !== undefined)
      checked.add(o.fid)
    }
  }

  apply(op: string, args: unknown, ctx: OpContext): Applied {
    this.admit(op, args, ctx)
    switch (op) {
      case 'ost_write': {
        const a = args as OpArgs<'ost_write'>
        const len = bulkLength(ctx.bulk)
        const pre = this.preVersions(ctx, [[a.fid, a.stripe]])
        this.refuseDestroyed(a.fid, a.stripe)
        // A replayed append lands where it landed the first time, whatever the size is now.
        const off = a.append ? (this.replayed(ctx)?.offset ?? this.current(a.fid, a.stripe).size) : a.offset
        const frags = a.niobufs ?? [{ offset: off, length: len }]
        const last = frags[frags.length - 1]!
        if (frags.reduce((n, f) => n + f.length, 0) !== len) throw new LpError('EINVAL', `the niobufs describe other than the ${len} bytes of bulk`)
        if (last.offset + last.length > MAX_FILE_SIZE) throw new LpError('EFBIG', `write past the maximum object size ${MAX_FILE_SIZE}`)
        const mt = a.mtime ?? ctx.now
        const t = ctx.transno
        this.versions.set(objKey(a.fid, a.stripe), t)
        // One pending op and one journal record per fragment, as if each had come alone.
        let at = 0
        const redo = frags.map((f): Redo => {
          const data = slice(ctx.bulk, at, (at += f.length))
          const p: PendingOp = { k: 'w', off: f.offset, data, len: f.length, mt }
          this.push(a.fid, a.stripe, p)
          const rec: OstRedo = { k: 'w', fid: a.fid, stripe: a.stripe, off: f.offset, mt, t }
          return { rec, data, ref: [objKey(a.fid, a.stripe), p] }
        })
        return { body: { offset: off, size: this.current(a.fid, a.stripe).size, pre_versions: pre }, redo }
      }
      case 'ost_punch': {
        const a = args as OpArgs<'ost_punch'>
        const pre = this.preVersions(ctx, [[a.fid, a.stripe]])
        this.refuseDestroyed(a.fid, a.stripe)
        const mt = a.mtime ?? ctx.now
        const p: PendingOp = { k: 't', size: a.size, mt }
        this.push(a.fid, a.stripe, p)
        this.versions.set(objKey(a.fid, a.stripe), ctx.transno)
        const rec: OstRedo = { k: 't', fid: a.fid, stripe: a.stripe, size: a.size, mt, t: ctx.transno }
        return { body: { pre_versions: pre }, redo: [{ rec, ref: [objKey(a.fid, a.stripe), p] }] }
      }
      case 'ost_setattr': {
        const a = args as OpArgs<'ost_setattr'>
        const pre = this.preVersions(ctx, [[a.fid, a.stripe]])
        // An object not written yet (or destroyed) has no time of its own to set.
        if (!this.current(a.fid, a.stripe).exists) return { body: { pre_versions: pre }, redo: [] }
        const p: PendingOp = { k: 'm', mt: a.mtime }
        this.push(a.fid, a.stripe, p)
        this.versions.set(objKey(a.fid, a.stripe), ctx.transno)
        const rec: OstRedo = { k: 'm', fid: a.fid, stripe: a.stripe, mt: a.mtime, t: ctx.transno }
        return { body: { pre_versions: pre }, redo: [{ rec, ref: [objKey(a.fid, a.stripe), p] }] }
      }
      case 'ost_destroy': {
        const fids = [...new Set((args as OpArgs<'ost_destroy'>).fids)]
        const stripesOf = new Map(fids.map((fid) => [fid, [...new Set([...(this.store.byFid.get(fid) ?? []), ...(this.pendingByFid.get(fid) ?? [])])]]))
        // Every check first: a mismatch on the last FID must leave the first ones alone.
        const pre = this.preVersions(
          ctx,
          fids.flatMap((fid) => stripesOf.get(fid)!.filter((s) => this.current(fid, s).exists).map((s): [number, number] => [fid, s])),
          new Set(fids),
        )
        const redo = fids.map((fid): Redo => {
          const stripes = stripesOf.get(fid)!
          const refs: Array<[string, PendingOp]> = []
          for (const stripe of stripes) {
            const p: PendingOp = { k: 'd' }
            this.push(fid, stripe, p)
            refs.push([objKey(fid, stripe), p])
          }
          // Remembered even when it had no object: a first write arriving late must not create one.
          this.forget(fid, stripes, ctx.transno)
          const rec: OstRedo = { k: 'd', fid, t: ctx.transno }
          return { rec, ref: refs }
        })
        return { body: { pre_versions: pre }, redo }
      }
      default:
        throw new LpError('EOPNOTSUPP', `OST does not modify with '${op}'`)
    }
  }

  async query(op: string, args: unknown, ctx: OpContext): Promise<QueryResult> {
    this.admit(op, args, ctx)
    switch (op) {
      case 'ost_read': {
        const a = args as OpArgs<'ost_read'>
        return this.read(a.fid, a.stripe, a.offset, a.length)
      }
      case 'ost_getattr': {
        const a = args as OpArgs<'ost_getattr'>
        return { body: { attrs: a.objects.map((o) => this.attrOf(o.fid, o.stripe)) } }
      }
      case 'ost_list': {
        const a = args as OpArgs<'ost_list'>
        return { body: this.list(a.after, a.count) }
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

  /** A page of the objects (as executed) and destroyed FIDs, in FID order after `after`. */
  private list(after: number, count: number): { entries: OstListEntry[]; next: number | null } {
    const fids = new Set<number>()
    for (const m of [this.store.byFid, this.pendingByFid, this.tombs]) for (const fid of m.keys()) if (fid > after) fids.add(fid)
    const sorted = [...fids].sort((x, y) => x - y)
    const entries: OstListEntry[] = []
    for (const fid of sorted.slice(0, count)) {
      const stripes = new Set([...(this.store.byFid.get(fid) ?? []), ...(this.pendingByFid.get(fid) ?? [])])
      const objects = [...stripes]
        .sort((x, y) => x - y)
        .filter((s) => this.current(fid, s).exists)
        .map((s) => ({ stripe: s, size: this.current(fid, s).size, version: this.version(fid, s) }))
      const destroyed = this.tombs.peek(fid)
      if (objects.length || destroyed !== undefined) entries.push(destroyed === undefined ? { fid, objects } : { fid, objects, destroyed })
    }
    return { entries, next: sorted.length > count ? sorted[count - 1]! : null }
  }

  private async read(fid: number, stripe: number, offset: number, length: number): Promise<QueryResult> {
    const key = objKey(fid, stripe)
    // Take the pending ops before reading the file: a commit applying some of them meanwhile
    // only writes the same bytes we fold in again.
    const ops = [...(this.overlays.get(key)?.ops ?? [])]
    // The attributes the bytes are of, taken with them: the reply can stand in for a glimpse.
    const attr = this.attrOf(fid, stripe)
    const n = Math.max(0, Math.min(length, (attr?.size ?? 0) - offset))
    // Not zeroed here: store.read fills every byte (zeroing 1 MiB cost 5% of an OSS's CPU when read).
    const buf = Buffer.allocUnsafe(n)
    if (n === 0) return { body: { length: 0, attr }, bulk: buf }
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
    return { body: { length: n, attr }, bulk: buf }
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

  /** The versions and tombstones as of the batch being checkpointed (taken synchronously). */
  snapshot(): unknown {
    const idx: OstIndex = { versions: [...this.versions], tombs: [...this.tombs.entries()].reverse() }
    return idx
  }

  /**
   * Objects are sparse files; their versions and the destroyed FIDs live in one index file per
   * checkpoint, written atomically and named by its transno, which CHECKPOINT then names: a
   * crash before CHECKPOINT keeps the previous index, and the journal redoes what follows it.
   */
  async persist(snapshot: unknown, transno: number): Promise<unknown> {
    await this.store.syncAll()
    const index = `index-${String(transno).padStart(12, '0')}.json`
    await writeFileAtomic(path.join(this.dir, index), JSON.stringify(snapshot), this.fence && (() => this.fence!.check()))
    return { index }
  }

  /** The indexes of both checkpoint generations on disk stay; older ones go. */
  async afterCheckpoint(live: unknown[]): Promise<void> {
    const keep = new Set(live.map((ref) => (ref as { index?: string } | undefined)?.index))
    for (const f of await fsp.readdir(this.dir)) if (/^index-\d+\.json$/.test(f) && !keep.has(f)) await fsp.rm(path.join(this.dir, f), { force: true })
  }

  async close(): Promise<void> {
    await this.store.close()
  }
}

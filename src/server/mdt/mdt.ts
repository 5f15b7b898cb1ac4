import { promises as fsp } from 'node:fs'
import path from 'node:path'
import type { Clock } from '../../common/clock.js'
import type { Logger } from '../../common/log.js'
import { mkdirDurable, readJson, writeFileAtomic } from '../../common/fsutil.js'
import type { Fence } from '../target/mmp.js'
import { z } from 'zod'
import { LpError } from '../../protocol/errno.js'
import { fidSchema, handleSchema, preVersionsSchema, MAX_LIST_FIDS, type Cred, type DirsChanged, type Layout, type MdtAttr, type OpArgs, type OpReplies } from '../../protocol/ops.js'
import type { Applied, Backend, OpContext, QueryResult, Redo } from '../target/backend.js'
import { fsStatfs } from '../statfs.js'
import { MAY_READ, MAY_WRITE, Namespace, ROOT_CRED, nsImageSchema, openWants, permits, type NsRedo } from './namespace.js'
import { makeCapa } from '../../protocol/capa.js'
import { effectiveCred, type SquashConfig } from './squash.js'

/**
 * Destroys the OST objects of a file (Lustre's OSP): resolves once every OST holding a
 * stripe of it confirmed, retrying as long as it takes.
 */
export interface ObjectDestroyer {
  destroy(fid: number, layout: Layout, signal: AbortSignal): Promise<void>
  /** What the orphan cleanup and lfsck need besides (a test's destroyer may have none of it). */
  onConnect?(fn: (ost: number) => void): void
  connected?(): number[]
  osts?(): Promise<number[]>
  /**
   * Undefined when the MGS lists every one of `osts` (as last read); else the configuration
   * read afresh: rejects (EINVAL) if one is still missing, resolves if all are there now.
   */
  checkOsts?(osts: readonly number[]): Promise<void> | undefined
  list?(ost: number, after: number, count: number): Promise<OpReplies['ost_list']>
  destroyOrphans?(ost: number, fids: number[]): Promise<void>
}

/** One OST as the orphan cleanup or lfsck found it. */
export interface OstScan {
  ost: number
  objects: number
  /** Objects whose FID has no file on this MDT with a stripe on this OST. */
  orphans: number
  orphan_bytes: number
  /** Orphans destroyed (with --fix, and by the orphan cleanup). */
  removed: number
  /** Stripes of live files whose object this OST destroyed: their data is gone, and writes to them are refused. */
  dangling: Array<{ fid: number; stripe: number }>
  error?: string
}

export interface LfsckReport {
  files: number
  /** Removed files whose objects' destroy the llog holds until each OST has committed it. */
  pending_destroys: number
  osts: OstScan[]
  fixed: boolean
}

export interface MdtOptions {
  dir: string
  clock: Clock
  destroyer?: ObjectDestroyer
  /** Lets the MDT commit its own bookkeeping (the llog cancel) as a transaction. */
  internalTxn?: (redo: Redo[]) => void
  /** FIDs per range granted (tests make it small). */
  fidRange?: number
  /** MMP: asked before the MDT writes its snapshots. */
  fence?: Fence
  /** root_squash and nosquash_nids (none: root is root from every NID). */
  squash?: SquashConfig
  /** Open handles per client (default MAX_OPENS_PER_CLIENT). */
  maxOpensPerClient?: number
  /** On a filesystem with a shared key: the key of the OST capabilities handed out with layouts. */
  capaKey?: Buffer
}

/** What the MDT uses of a replay's original reply (sent back by the client: validated as any input). */
const replayedSchema = z.object({
  attr: z.object({ fid: fidSchema }).passthrough().optional(),
  handle: handleSchema.optional(),
  fid: fidSchema.optional(),
  pre_versions: preVersionsSchema.optional(),
})

/** CHECKPOINT's part of the MDT: the name of its namespace image, which persist() makes (never a path elsewhere). */
const snapshotRefSchema = z.object({ snapshot: z.string().regex(/^ns-\d{12}\.json$/) })

export class MdtBackend implements Backend {
  private ns!: Namespace
  private log: Logger | null = null
  private readonly destroying = new Set<number>()
  private readonly abort = new AbortController()
  private recoveryDone = false
  /** OSTs whose orphan cleanup runs; true: another was asked for meanwhile and runs after it. */
  private readonly cleaning = new Map<number, boolean>()
  private internalTxn: (redo: Redo[]) => void
  private ownTxn: ((redo: Redo[]) => void) | null = null
  /** Creates waiting for a FID range to commit. */
  private fidWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = []

  constructor(private readonly o: MdtOptions) {
    this.internalTxn = o.internalTxn ?? (() => undefined)
  }

  setInternalTxn(fn: (redo: Redo[]) => void): void {
    this.internalTxn = fn
  }

  private snapDir(): string {
    return path.join(this.o.dir, 'snapshots')
  }

  async load(checkpoint: unknown): Promise<void> {
    const ref = checkpoint === undefined ? undefined : snapshotRefSchema.parse(checkpoint)
    if (!ref) {
      this.ns = Namespace.fresh(this.o.clock.wallNow(), this.o.fidRange)
      this.limit()
      return
    }
    const file = path.join(this.snapDir(), ref.snapshot)
    const img = await readJson(file, nsImageSchema)
    if (!img) throw new LpError('ENOENT', `${file}: the namespace image CHECKPOINT names is missing`)
    this.ns = Namespace.fromImage(img, this.o.fidRange)
    this.limit()
  }

  private limit(): void {
    if (this.o.maxOpensPerClient !== undefined) this.ns.maxOpensPerClient = this.o.maxOpensPerClient
  }

  async redo(rec: Record<string, unknown>): Promise<void> {
    this.ns.redo(rec as unknown as NsRedo)
  }

  /**
   * The request's arguments with the identity it acts with: root squashed unless its NID is
   * exempt, and a squashed create names the squash ids as the new file's owner.
   */
  private asCaller<A extends { cred?: Cred }>(op: string, args: A, peer: string | undefined): A {
    const { cred, squashed } = effectiveCred(this.o.squash, args.cred, peer)
    if (!squashed) return args
    const a: A & { uid?: number; gid?: number } = { ...args, cred }
    if (op === 'mdt_create') {
      if (a.uid === 0) a.uid = cred!.uid
      if (a.gid === 0) a.gid = cred!.gid
    }
    return a
  }

  apply(op: string, input: unknown, ctx: OpContext): Applied {
    const ns = this.ns
    const args = this.asCaller(op, input as { cred?: Cred }, ctx.peer)
    let replay: z.infer<typeof replayedSchema> | undefined
    if (ctx.replayReply !== undefined) {
      const p = replayedSchema.safeParse(ctx.replayReply)
      if (!p.success) throw new LpError('EPROTO', `a replay's original reply is malformed: ${p.error.issues[0]?.message}`)
      replay = p.data
    }
    /** Run a namespace change, reporting each directory it changed: change counter before, attributes after. */
    const changing = <R extends object>(fids: number[], fn: () => R): R & DirsChanged => {
      const ids = [...new Set(fids)]
      const was = ids.map((f) => ns.changeOf(f))
      const r = fn()
      return { ...r, dirs: ids.map((f) => ns.attr(ns.inode(f))), was }
    }
    const { result, redo } = ns.tx((): unknown => {
      switch (op) {
        case 'mdt_create': {
          const a = args as OpArgs<'mdt_create'>
          return changing([a.parent], () => ns.create(a, ctx.client, replay))
        }
        case 'mdt_setattr':
          return ns.setattr(args as OpArgs<'mdt_setattr'>, ctx.now)
        case 'mdt_link': {
          const a = args as OpArgs<'mdt_link'>
          return changing([a.parent], () => ns.link(a))
        }
        // A replay from a client that did not name the inode acts on the one its original did.
        case 'mdt_unlink': {
          const a = args as OpArgs<'mdt_unlink'>
          return changing([a.parent], () => ns.unlink({ ...a, fid: a.fid ?? replay?.fid }))
        }
        case 'mdt_rename': {
          const a = args as OpArgs<'mdt_rename'>
          return changing([a.parent, a.new_parent], () => ns.rename({ ...a, fid: a.fid ?? replay?.fid }))
        }
        case 'mdt_open':
          return ns.open(args as OpArgs<'mdt_open'>, ctx.client, replay)
        case 'mdt_close':
          // A batch: a handle this client no longer holds (an eviction dropped it) is passed over, not refused.
          for (const h of (args as OpArgs<'mdt_close'>).handles) if (ns.openOf(h)?.client === ctx.client) ns.close(h, ctx.client)
          return {}
        default:
          throw new LpError('EOPNOTSUPP', `MDT does not modify with '${op}'`)
      }
    }, { transno: ctx.transno, replay: replay && { expect: replay.pre_versions } })
    // Whoever made or opened a file may do with its objects what it asked for, whatever the mode says (as open(2) with O_CREAT).
    const opened = op === 'mdt_open' ? openWants((args as OpArgs<'mdt_open'>).flags) : op === 'mdt_create' ? MAY_READ | MAY_WRITE : 0
    return { body: this.granted(result, args.cred, ctx, opened), redo }
  }

  /**
   * A reply's layouts with the OST capabilities of the caller (protocol/capa.ts): read and
   * write as its permissions on each file allow, and what the create or open granted.
   */
  private granted<B>(body: B, cred: Cred | undefined, ctx: OpContext, opened = 0): B {
    const key = this.o.capaKey
    if (!key || typeof body !== 'object' || body === null) return body
    const who = cred ?? ROOT_CRED
    const grant = (a: MdtAttr | null): MdtAttr | null => {
      if (!a?.layout) return a
      const w = opened & MAY_WRITE || permits(a, who, MAY_WRITE)
      const r = opened & MAY_READ || permits(a, who, MAY_READ)
      if (!r && !w) return a
      // Write implies read here: a writer's partial-page writes read the object back.
      return { ...a, layout: { ...a.layout, capa: makeCapa(key, a.fid, ctx.client, w ? 'rw' : 'r', ctx.now) } }
    }
    const b = body as { attr?: MdtAttr; attrs?: (MdtAttr | null)[] }
    return {
      ...body,
      ...(b.attr && { attr: grant(b.attr) }),
      ...(b.attrs && { attrs: b.attrs.map(grant) }),
    }
  }

  /**
   * A layout names OSTs the filesystem has (Lustre's MDT refuses `lfs setstripe -i` of an OST
   * it lacks: the destroy of its objects would wait forever for an OST that never comes); one
   * the OSP does not know yet is looked for afresh on the MGS (it may have just registered).
   * A create takes a FID only from a committed range: the next one is granted ahead of need,
   * and waited for when none is left. Replays come not here: their originals were taken.
   */
  prepare(op: string, args: unknown): Promise<void> | undefined {
    const layout = op === 'mdt_create' || op === 'mdt_setattr' ? (args as { layout?: Layout | null }).layout : undefined
    const listing = layout && this.o.destroyer?.checkOsts?.(layout.osts)
    if (listing) return listing
    if (op !== 'mdt_create') return undefined
    this.grantAhead()
    if (this.ns.fidReady) return undefined
    return new Promise((resolve, reject) => this.fidWaiters.push({ resolve, reject }))
  }

  private grantAhead(): void {
    if (this.ownTxn && this.ns.wantsRange) this.ownTxn(this.ns.tx(() => this.ns.grantRange()).redo)
  }

  async query(op: string, input: unknown, ctx: OpContext): Promise<QueryResult> {
    const ns = this.ns
    const args = this.asCaller(op, input as { cred?: Cred }, ctx.peer)
    switch (op) {
      // Attributes by FID need no permission (as a stat needs none on the file itself).
      case 'mdt_getattr': {
        const a = args as OpArgs<'mdt_getattr'>
        // Named by its opener (a capability renewed for write-back): what the open granted, whoever asks.
        const o = a.handle === undefined ? undefined : ns.openOf(a.handle)
        const opened = o && o.client === ctx.client && o.fid === a.fid ? openWants(o.flags) : 0
        return { body: this.granted({ attr: ns.attr(ns.inode(a.fid)) }, a.cred, ctx, opened) }
      }
      case 'mdt_lookup': {
        const a = args as OpArgs<'mdt_lookup'>
        ns.search(a.cred, a.parent)
        return { body: this.granted({ attr: ns.attr(ns.lookup(a.parent, a.name)) }, a.cred, ctx) }
      }
      case 'mdt_batch_lookup': {
        const a = args as OpArgs<'mdt_batch_lookup'>
        ns.search(a.cred, a.parent)
        return { body: this.granted({ attrs: ns.lookupMany(a.parent, a.names).map((i) => i && ns.attr(i)) }, a.cred, ctx) }
      }
      case 'mdt_readdir': {
        const a = args as OpArgs<'mdt_readdir'>
        ns.mayList(a.cred, a.fid)
        return { body: ns.readdir(a.fid, a.cookie, a.count) }
      }
      case 'statfs': {
        const s = await fsStatfs(this.o.dir)
        return { body: { ...s, files: ns.inodeCount + s.ffree, objects: ns.inodeCount } }
      }
      default:
        throw new LpError('EOPNOTSUPP', `MDT does not answer '${op}'`)
    }
  }

  dropClient(uuid: string): Redo[] {
    return this.ns.tx(() => this.ns.dropClient(uuid)).redo
  }

  async afterCommit(redo: Redo[]): Promise<void> {
    // Objects of a file are destroyed only once its removal is durable.
    for (const r of redo) {
      const rec = r.rec as unknown as NsRedo
      if (rec.k === 'llog' && rec.v) this.scheduleDestroy(rec.fid, rec.v)
      if (rec.k === 'fidend') this.ns.rangeCommitted(rec.v)
    }
    if (this.fidWaiters.length && this.ns.fidReady) for (const w of this.fidWaiters.splice(0)) w.resolve()
  }

  start(log: Logger, own: (redo: Redo[]) => void): void {
    this.log = log
    this.ownTxn = own
    for (const [fid, layout] of this.ns.llog) this.scheduleDestroy(fid, layout)
    // The first range now (committed before any barrier), not at the first create.
    this.grantAhead()
    this.o.destroyer?.onConnect?.((ost) => {
      if (this.recoveryDone) this.orphanCleanup(ost)
    })
    this.cleanupConnected()
  }

  recovered(): void {
    this.recoveryDone = true
    this.cleanupConnected()
  }

  private cleanupConnected(): void {
    if (!this.log || !this.recoveryDone) return
    for (const ost of this.o.destroyer?.connected?.() ?? []) this.orphanCleanup(ost)
  }

  /**
   * Lustre's orphan cleanup, run once recovery is over and each time the OSP (re)connects to
   * an OST: every object of that OST whose FID names no file of this MDT with a stripe there
   * (nor one whose destroy the llog holds) is destroyed. Why that is safe against the races:
   *   - a file being created now: its inode exists (executed, committed or not) before the
   *     client gets its FID and layout, so before any write of it reaches an OST; an object
   *     listed at one instant and checked against the namespace later is either a live file's
   *     (still there: it could only go through unlink, which puts it in the llog) or an orphan;
   *   - replayed creates exist only after recovery: hence no cleanup before it is complete;
   *     a client evicted instead loses its creates, and its objects are orphans indeed;
   *   - between the check and the OST executing the destroy no new file can take the FID:
   *     a FID is given once (the MDT's FID ranges), so the destroy hits only the orphan, and
   *     the tombstone it leaves refuses a late write of the evicted client;
   *   - objects written while the scan runs have FIDs of files that exist: never destroyed;
   *     a destroy lost with an OST crash is found again by the cleanup on the reconnect.
   */
  private orphanCleanup(ost: number): void {
    if (this.cleaning.has(ost)) return void this.cleaning.set(ost, true)
    this.cleaning.set(ost, false)
    this.scan(ost, true)
      .then(
        (r) => {
          if (r.removed) this.log?.warn({ ost, orphans: r.removed, bytes: r.orphan_bytes }, `OST${ost}: orphan cleanup destroyed ${r.removed} orphan object(s), ${r.orphan_bytes} bytes`)
          else this.log?.info({ ost, objects: r.objects }, `OST${ost}: orphan cleanup found no orphan among ${r.objects} object(s)`)
        },
        (e) => {
          if (!this.abort.signal.aborted) this.log?.warn({ ost, err: (e as Error).message }, `OST${ost}: orphan cleanup interrupted, retried at the next connect: ${(e as Error).message}`)
        },
      )
      .finally(() => {
        const again = this.cleaning.get(ost)
        this.cleaning.delete(ost)
        if (again && !this.abort.signal.aborted) this.orphanCleanup(ost)
      })
  }

  /** Page through an OST's objects; orphans destroyed if `fix`. */
  private async scan(ost: number, fix: boolean): Promise<OstScan> {
    const d = this.o.destroyer
    if (!d?.list || !d.destroyOrphans) throw new LpError('EOPNOTSUPP', 'this MDT has no OSP to list the OSTs with')
    const r: OstScan = { ost, objects: 0, orphans: 0, orphan_bytes: 0, removed: 0, dangling: [] }
    for (let after = 0; ; ) {
      const page = await d.list(ost, after, MAX_LIST_FIDS)
      const orphans: number[] = []
      // Checked against the namespace only now, after the page was listed (see orphanCleanup).
      for (const e of page.entries) {
        r.objects += e.objects.length
        const layout = this.ns.layoutOf(e.fid)
        const here = layout ? layout.osts.flatMap((o, stripe) => (o === ost ? [stripe] : [])) : []
        if (!here.length) {
          if (e.objects.length && !this.ns.llog.has(e.fid) && !this.destroying.has(e.fid)) {
            orphans.push(e.fid)
            r.orphans += e.objects.length
            r.orphan_bytes += e.objects.reduce((n, o) => n + o.size, 0)
          }
        } else if (e.destroyed !== undefined) {
          for (const stripe of here) if (!e.objects.some((o) => o.stripe === stripe)) r.dangling.push({ fid: e.fid, stripe })
        }
      }
      if (fix && orphans.length) {
        await d.destroyOrphans(ost, orphans)
        r.removed += orphans.length
      }
      if (page.next === null) return r
      after = page.next
    }
  }

  /**
   * LFSCK's layout check: orphans on every OST (destroyed with `fix`), and dangling stripes.
   * A stripe is dangling when its OST has destroyed the object (a tombstone). A stripe with
   * no object and no tombstone is not: objects are made by their first write, so a stripe
   * never written (a sparse file, a file smaller than one stripe per OST) has none, and no
   * file size can tell a hole from a lost object soundly.
   */
  async lfsck(fix: boolean): Promise<LfsckReport> {
    if (!this.recoveryDone) throw new LpError('EBUSY', 'the MDT is in recovery: replayed creates are not in yet; run lfsck once it is complete')
    const d = this.o.destroyer
    if (!d?.osts) throw new LpError('EOPNOTSUPP', 'this MDT has no OSP to list the OSTs with')
    const osts: OstScan[] = []
    for (const ost of (await d.osts()).sort((a, b) => a - b)) {
      try {
        osts.push(await this.scan(ost, fix))
      } catch (e) {
        osts.push({ ost, objects: 0, orphans: 0, orphan_bytes: 0, removed: 0, dangling: [], error: (e as Error).message })
      }
    }
    return { files: [...this.ns.layouts()].length, pending_destroys: this.ns.llog.size, osts, fixed: fix }
  }

  private scheduleDestroy(fid: number, layout: Layout): void {
    const d = this.o.destroyer
    if (!d || !this.log || this.destroying.has(fid)) return
    this.destroying.add(fid)
    d.destroy(fid, layout, this.abort.signal).then(
      () => {
        this.destroying.delete(fid)
        this.internalTxn(this.ns.tx(() => this.ns.cancelLlog(fid)).redo)
        this.log?.debug({ fid }, 'objects destroyed')
      },
      (e) => {
        this.destroying.delete(fid)
        if (!this.abort.signal.aborted) this.log?.error({ fid, err: (e as Error).message }, 'object destroy abandoned')
      },
    )
  }

  /** FIDs whose objects still wait to be destroyed. */
  pendingDestroys(): number {
    return this.ns.llog.size
  }

  snapshot(): unknown {
    return this.ns.image()
  }

  async persist(snapshot: unknown, transno: number): Promise<unknown> {
    await this.o.fence?.check()
    await mkdirDurable(this.snapDir())
    const name = `ns-${String(transno).padStart(12, '0')}.json`
    await writeFileAtomic(path.join(this.snapDir(), name), JSON.stringify(snapshot), this.o.fence && (() => this.o.fence!.check()))
    return { snapshot: name }
  }

  async afterCheckpoint(live: unknown[]): Promise<void> {
    const keep = new Set(live.map((ref) => (ref as { snapshot?: string } | undefined)?.snapshot))
    for (const f of await fsp.readdir(this.snapDir())) if (!keep.has(f)) await fsp.rm(path.join(this.snapDir(), f), { force: true })
  }

  async close(): Promise<void> {
    this.abort.abort()
    for (const w of this.fidWaiters.splice(0)) w.reject(new LpError('ENODEV', 'the MDT stopped before a FID range was committed'))
  }
}

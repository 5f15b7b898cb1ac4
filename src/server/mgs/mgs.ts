import path from 'node:path'
import { z } from 'zod'
import { exactly } from '../../common/exact.js'
import type { Clock } from '../../common/clock.js'
import { readJson, writeFileAtomic } from '../../common/fsutil.js'
import { LpError } from '../../protocol/errno.js'
import type { FsConfig, IrEvent, OpArgs, TargetInfo } from '../../protocol/ops.js'
import type { Applied, Backend, QueryResult, Redo } from '../target/backend.js'
import type { Fence } from '../target/mmp.js'


const u = z.number().int().min(0)
/** The MGS's configuration log as it reads it back from disk. */
const fsConfigSchema = exactly<FsConfig>()(
  z.object({
    fsname: z.string().min(1).max(8),
    port: z.number().int().min(1).max(65535),
    seq: u,
    targets: z.array(
      z.object({
        name: z.string().min(1).max(64),
        kind: z.enum(['mgs', 'mdt', 'ost']),
        index: u.max(0xffff),
        nids: z.array(z.string().min(1).max(128)).max(16),
        mode: z.enum(['failover', 'failout']),
        active: z.boolean(),
        current_nid: z.string().min(1).max(128).optional(),
        instance: u,
      }),
    ),
  }),
)
/**
 * The management service: the filesystem's configuration (targets, their NIDs and modes,
 * permanent parameters), written through on every change, and the imperative-recovery
 * notices that tell clients where a restarted target now serves.
 */
const WATCH_KEEP = 1000

/**
 * tunefs --writeconf on the MGS's directory (not served): the MGS forgets every target, which
 * registers afresh at its next start. The sequence goes on, so that clients watching from an
 * older one still see the notices that follow.
 */
export async function forgetTargets(mgsDir: string, allowed?: () => Promise<void>): Promise<number> {
  const file = path.join(mgsDir, 'config.json')
  const cfg = await readJson(file, fsConfigSchema)
  if (!cfg) return 0
  const forgotten = cfg.targets.length
  await writeFileAtomic(file, JSON.stringify({ ...cfg, targets: [], seq: cfg.seq + 1 }, null, 2), allowed)
  return forgotten
}

export class MgsBackend implements Backend {
  private cfg!: FsConfig
  private events: IrEvent[] = []
  private watchers: Array<() => void> = []
  private saving: Promise<void> = Promise.resolve()

  constructor(
    private readonly dir: string,
    private readonly fsname: string,
    private readonly port: number,
    private readonly clock: Clock,
    /** MMP: asked before the configuration is written. */
    private readonly fence?: Fence,
  ) {}

  private file(): string {
    return path.join(this.dir, 'config.json')
  }

  async load(): Promise<void> {
    this.cfg = (await readJson(this.file(), fsConfigSchema)) ?? { fsname: this.fsname, port: this.port, targets: [], seq: 0 }
  }

  async redo(): Promise<void> {}

  apply(op: string): Applied {
    throw new LpError('EOPNOTSUPP', `MGS does not modify with '${op}'`)
  }

  private save(): Promise<void> {
    this.cfg.seq += 1
    // One write at a time, each of the configuration as it is then: two registrations at once
    // (an MDT and an OST starting together) must not let the older one's rename land last.
    const next = this.saving.then(() => writeFileAtomic(this.file(), JSON.stringify(this.cfg, null, 2), this.fence && (() => this.fence!.check())))
    this.saving = next.catch(() => undefined)
    return next
  }

  private notify(ev: Omit<IrEvent, 'seq'>): void {
    this.events.push({ ...ev, seq: this.cfg.seq })
    if (this.events.length > WATCH_KEEP) this.events.splice(0, this.events.length - WATCH_KEEP)
    for (const w of this.watchers.splice(0)) w()
  }

  /** Resolves at the next notice, or after `ms` (then the watcher is dropped: long-polls repeat all day). */
  private nextNotice(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const w = () => {
        t.cancel()
        resolve()
      }
      const t = this.clock.setTimeout(() => {
        this.watchers = this.watchers.filter((x) => x !== w)
        resolve()
      }, ms)
      this.watchers.push(w)
    })
  }

  async query(op: string, args: unknown): Promise<QueryResult> {
    switch (op) {
      case 'mgs_config': {
        const a = args as OpArgs<'mgs_config'>
        if (a.fsname && a.fsname !== this.cfg.fsname) throw new LpError('ENOENT', `this MGS serves filesystem '${this.cfg.fsname}', not '${a.fsname}'`)
        return { body: this.cfg }
      }
      case 'mgs_target_reg':
        return { body: await this.register(args as OpArgs<'mgs_target_reg'>) }
      case 'mgs_set_param': {
        const a = args as OpArgs<'mgs_set_param'>
        const t = this.cfg.targets.find((x) => x.name === a.target)
        if (!t) throw new LpError('ENOENT', `no target '${a.target}' registered with this MGS`)
        if (a.value !== '0' && a.value !== '1') throw new LpError('EINVAL', `active must be 0 or 1, not '${a.value}'`)
        t.active = a.value === '1'
        await this.save()
        this.notify({ target: t.name, nid: t.current_nid ?? t.nids[0]!, instance: t.instance })
        return { body: {} }
      }
      case 'mgs_watch': {
        const a = args as OpArgs<'mgs_watch'>
        const fresh = () => this.events.filter((e) => e.seq > a.since)
        if (!fresh().length && a.wait_ms > 0) await this.nextNotice(a.wait_ms)
        return { body: { seq: this.cfg.seq, events: fresh() } }
      }
      default:
        throw new LpError('EOPNOTSUPP', `MGS does not answer '${op}'`)
    }
  }

  private async register(a: OpArgs<'mgs_target_reg'>): Promise<Record<string, never>> {
    if (a.fsname !== this.cfg.fsname) throw new LpError('EINVAL', `target ${a.name} belongs to '${a.fsname}', this MGS serves '${this.cfg.fsname}'`)
    let t = this.cfg.targets.find((x) => x.name === a.name)
    const other = this.cfg.targets.find((x) => x.kind === a.kind && x.index === a.index && x.name !== a.name)
    if (other) throw new LpError('EEXIST', `index ${a.index} is already used by ${other.name}`)
    if (!t) {
      const info: TargetInfo = {
        name: a.name,
        kind: a.kind,
        index: a.index,
        nids: [a.nid, ...a.failnodes.filter((n) => n !== a.nid)],
        mode: a.mode,
        active: true,
        instance: a.instance,
        current_nid: a.nid,
      }
      this.cfg.targets.push(info)
      this.cfg.targets.sort((x, y) => (x.kind === y.kind ? x.index - y.index : x.kind === 'mdt' ? -1 : 1))
      t = info
    } else if (a.writeconf) {
      // tunefs --writeconf: what the MGS knew of the target is regenerated from this registration.
      t.nids = [a.nid, ...a.failnodes.filter((n) => n !== a.nid)]
      t.mode = a.mode
      t.active = true
      t.instance = a.instance
      t.current_nid = a.nid
    } else {
      if (!t.nids.includes(a.nid)) t.nids.push(a.nid)
      for (const f of a.failnodes) if (!t.nids.includes(f)) t.nids.push(f)
      t.mode = a.mode
      t.instance = a.instance
      t.current_nid = a.nid
    }
    await this.save()
    this.notify({ target: t.name, nid: a.nid, instance: a.instance })
    return {}
  }

  dropClient(): Redo[] {
    return []
  }

  async afterCommit(): Promise<void> {}

  snapshot(): unknown {
    return null
  }

  async persist(): Promise<unknown> {
    return null
  }

  async afterCheckpoint(): Promise<void> {}

  async close(): Promise<void> {
    for (const w of this.watchers.splice(0)) w()
  }
}

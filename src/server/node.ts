import type net from 'node:net'
import path from 'node:path'
import { promises as fsp } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { z } from 'zod'
import type { Clock } from '../common/clock.js'
import type { Logger } from '../common/log.js'
import type { TlsMaterial } from '../common/tls.js'
import { serveJsonSocket } from '../common/jsonsock.js'
import { getParamValues, paramListSchema } from '../common/params.js'
import { nodeSocket } from '../common/rundir.js'
import { LpError } from '../protocol/errno.js'
import { nidHost, nidList } from '../protocol/nid.js'
import { parseTargetName, targetName } from '../protocol/names.js'
import { PtlrpcClient } from '../ptlrpc/client.js'
import { Mgc } from '../mgc/mgc.js'
import { createFront, type Front } from './front.js'
import { MdtBackend } from './mdt/mdt.js'
import { squashOf } from './mdt/squash.js'
import { MgsBackend } from './mgs/mgs.js'
import { OstBackend } from './ost/ost.js'
import { Osp } from './osp.js'
import { Mmp } from './target/mmp.js'
import { readConfig, readTargetKey, describe, peerNids, writeConfig, type TargetConfig } from './target/config.js'
import { deriveCapaKey, signingKeyOf } from '../common/keyfile.js'
import { Guard } from './guard.js'
import { Target } from './target/target.js'
import { serverParamTable } from './params.js'
import { serverTunables } from './tunables.js'

/** A target by name, or by the directory it is mounted from (and its kind, where the MGS shares it). */
const select = {
  target: z.string().min(1).max(64).optional(),
  dir: z.string().min(1).max(4096).optional(),
  kind: z.enum(['mgs', 'mdt', 'ost']).optional(),
}
type TargetSelect = z.infer<z.ZodObject<typeof select>>

/** The node's admin socket requests, each checked before it is acted on. */
const adminRequestSchema = z.discriminatedUnion('cmd', [
  z.object({
    cmd: z.literal('mount'),
    dir: z.string().min(1).max(4096),
    params: z.record(z.string().max(128), z.string().max(4096)).optional(),
    /** The admin's --discard-corrupt-journal: start past journal damage. */
    discard_corrupt_journal: z.boolean().optional(),
  }),
  z.object({ cmd: z.literal('umount'), dir: z.string().min(1).max(4096), clean: z.boolean().optional() }),
  z.object({ cmd: z.literal('barrier'), ...select }),
  z.object({ cmd: z.literal('recovery_status'), ...select }),
  z.object({ cmd: z.literal('abort_recovery'), ...select }),
  z.object({ cmd: z.literal('evict'), ...select, client: z.string().min(1).max(128) }),
  z.object({ cmd: z.literal('lfsck'), ...select, fix: z.boolean().optional() }),
  z.object({ cmd: z.literal('status') }),
  z.object({ cmd: z.literal('get_param'), patterns: paramListSchema }),
])
type AdminRequest = z.infer<typeof adminRequestSchema>

/**
 * A server node: one process bound to one NID, serving every target mounted on it
 * (active/active pairs mount each other's targets on failover). Killing it is a node crash.
 */
export interface NodeOptions {
  nid: string
  name: string
  port: number
  clock: Clock
  log: Logger
  /** Mutual TLS: the front takes TLS only, and the node's own RPCs (MGS registration, OSP) present its certificate. */
  tls?: TlsMaterial
  /** Called when the last target stops: the process should exit. */
  onEmpty: () => void
}

export interface MountOptions {
  /** Start past journal damage from the last good record, logging what is dropped. */
  discardCorruptJournal?: boolean
}

interface Mounted {
  dir: string
  cfg: TargetConfig
  mmp: Mmp
  targets: Target[]
  mgc: Mgc | null
  osp: Osp | null
  mdt: MdtBackend | null
  client: PtlrpcClient | null
}

export class ServerNode {
  private readonly targets = new Map<string, Target>()
  private readonly mounts = new Map<string, Mounted>()
  private readonly starting = new Set<string>()
  private readonly targetWatchers: Array<(t: Target) => void> = []
  /** Set once the last target stopped: the process is exiting and takes no new target. */
  private exiting = false
  private front: Front | null = null
  private admin: net.Server | null = null
  private readonly log: Logger

  constructor(private readonly o: NodeOptions) {
    this.log = o.log.child({ nid: o.nid })
  }

  get socketPath(): string {
    return nodeSocket(this.o.nid, this.o.port)
  }

  async listen(): Promise<void> {
    const front = createFront(this.targets, this.log, { tls: this.o.tls })
    const server = front.server
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(new LpError(e.code === 'EADDRINUSE' ? 'EADDRINUSE' : 'EIO', `cannot listen on ${nidHost(this.o.nid)}:${this.o.port}: ${e.message}`)),
      )
      server.listen(this.o.port, nidHost(this.o.nid), () => resolve())
    })
    this.front = front
    this.admin = await serveJsonSocket(this.socketPath, adminRequestSchema, (req) => this.adminRequest(req))
    this.log.info({ port: this.o.port, pid: process.pid }, `node ${this.o.name} (${this.o.nid}) listening on port ${this.o.port}`)
  }

  /** Mount the target(s) in `dir` on this node: MMP, load, serve, register with the MGS. */
  async mountDir(dirArg: string, overrides: Record<string, string> = {}, opts: MountOptions = {}): Promise<string[]> {
    const dir = path.resolve(dirArg)
    if (this.exiting) throw new LpError('ESHUTDOWN', `node ${this.o.name} is exiting (it serves no target any more); start the target again`)
    if (this.mounts.has(dir) || this.starting.has(dir)) throw new LpError('EALREADY', `${dir} is already mounted on this node`)
    this.starting.add(dir)
    try {
      return await this.doMount(dir, overrides, opts)
    } finally {
      this.starting.delete(dir)
    }
  }

  private async doMount(dir: string, overrides: Record<string, string>, opts: MountOptions): Promise<string[]> {
    const cfg = await readConfig(dir)
    const master = await readTargetKey(dir, cfg)
    if (!master)
      this.log.warn({ dir }, `${describe(cfg)}: formatted without a shared key: its RPCs are not authenticated, anyone who reaches port ${cfg.port} may act as any client (format --key-file)`)
    const guard = master ? new Guard(master, this.o.clock) : null
    // What this node sends to other servers (registration, the OSP's RPCs) is signed with the node key.
    const nodeKey = master ? signingKeyOf(master, 'node') : undefined
    const capaKey = master ? deriveCapaKey(master) : undefined
    if (cfg.port !== this.o.port) throw new LpError('EINVAL', `${dir} belongs to a filesystem on port ${cfg.port}, this node listens on ${this.o.port}`)
    const tun = serverTunables(cfg, overrides)
    if (cfg.params.tls === 'required' && !this.o.tls)
      throw new LpError('EACCES', `${describe(cfg)} was formatted with tls=required: start it on a node with --tls-ca, --tls-cert and --tls-key`)
    // The front's deadlines follow the filesystem's obd_timeout (one filesystem per port).
    this.front?.retune(tun.obdTimeoutMs)
    const log = this.log
    const m: Mounted = { dir, cfg, targets: [], mgc: null, osp: null, mdt: null, client: null, mmp: null! }
    m.mmp = new Mmp({
      dir,
      intervalMs: tun.mmpIntervalMs,
      clock: this.o.clock,
      node: this.o.name,
      nid: this.o.nid,
      onForeign: (b) => {
        // ext4's kmmpd words, then what this node does about it.
        log.error(
          { dir, holder: b.node, holder_nid: b.nid, holder_pid: b.pid, mmp_seq: b.seq },
          `${describe(cfg)}: kmmpd: device ${dir} is already active on another node. MMP failure info: last update time: ${new Date(b.time).toISOString()}, ` +
            `last update node: ${b.node} (${b.nid}, pid ${b.pid}). Stopping the target here at once; nothing more is written to it`,
        )
        void this.unmount(dir, false)
      },
    })
    this.log.info({ dir }, `${describe(cfg)}: checking multiple-mount protection`)
    await m.mmp.acquire()
    try {
      const mgsNids = cfg.mgsnode ? nidList(cfg.mgsnode) : [this.o.nid, ...peerNids(cfg)]
      // The target's own client identity (Lustre's <target>-mdtlov_UUID) is the same on either
      // node of the pair: OSTs must recognise the MDT's OSP after it fails over.
      m.client = new PtlrpcClient(this.o.clock, this.log, this.o.port, { uuid: `${describe(cfg).replace(/\+/g, '-')}-tgt_UUID`, key: nodeKey, tls: this.o.tls })
      m.client.tunables.timeout = tun.obdTimeoutMs / 1000
      m.mgc = new Mgc(m.client, mgsNids, this.log)
      const mode = cfg.params['failover.mode'] === 'failout' ? 'failout' : 'failover'
      const fence = m.mmp
      const base = { clock: this.o.clock, log: this.log, tunables: tun, fence, discardCorruptJournal: opts.discardCorruptJournal, guard }
      if (cfg.mgs) {
        const b = new MgsBackend(path.join(dir, 'mgs'), cfg.fsname, cfg.port, this.o.clock, fence)
        m.targets.push(await Target.open({ ...base, name: 'MGS', kind: 'mgs', dir: path.join(dir, 'mgs'), backend: b, replayable: false }))
      }
      if (cfg.mdt) {
        const name = targetName(cfg.fsname, { kind: 'mdt', index: cfg.index })
        // A new client UUID at every start (Lustre's OSP gets a new connection): it must never
        // be handed the saved replies of the incarnation before.
        const osp = new PtlrpcClient(this.o.clock, this.log, this.o.port, { uuid: `${name}-mdtlov-${randomBytes(4).toString('hex')}_UUID`, key: nodeKey, tls: this.o.tls })
        osp.tunables.timeout = tun.obdTimeoutMs / 1000
        m.osp = new Osp(osp, m.mgc, cfg.fsname, this.log)
        const b = new MdtBackend({ dir: path.join(dir, 'mdt'), clock: this.o.clock, destroyer: m.osp, fence, squash: squashOf({ ...cfg.params, ...overrides }), capaKey })
        m.mdt = b
        const t = await Target.open({ ...base, name, kind: 'mdt', dir: path.join(dir, 'mdt'), backend: b, replayable: mode === 'failover' })
        b.setInternalTxn((redo) => t.internalTxn(redo))
        m.targets.push(t)
      }
      if (cfg.ost) {
        const name = targetName(cfg.fsname, { kind: 'ost', index: cfg.index })
        const b = new OstBackend(path.join(dir, 'ost'), fence, name, capaKey)
        m.targets.push(await Target.open({ ...base, name, kind: 'ost', dir: path.join(dir, 'ost'), backend: b, replayable: mode === 'failover' }))
      }
      this.mounts.set(dir, m)
      for (const t of m.targets) {
        this.targets.set(t.name, t)
        for (const w of this.targetWatchers) w(t)
        t.start()
        this.log.info({ instance: t.instance }, `${t.name}: serving on ${this.o.nid}${t.recovering ? ', in recovery' : ''}`)
      }
      m.mgc.start()
      for (const t of m.targets) if (t.kind !== 'mgs') this.register(m, t, mode)
      m.osp?.start()
      return m.targets.map((t) => t.name)
    } catch (e) {
      // A target opened before the one that failed (the MGS beside a damaged MDT) is stopped: its journal open otherwise stays.
      for (const t of m.targets) await t.stop(false).catch(() => undefined)
      await m.mmp.release(true)
      await m.osp?.close()
      await m.client?.close()
      throw e
    }
  }

  private register(m: Mounted, t: Target, mode: 'failover' | 'failout'): void {
    const failnodes = peerNids(m.cfg)
    const writeconf = m.cfg.writeconf === true
    m.mgc!
      .register({
        name: t.name,
        kind: t.kind as 'mdt' | 'ost',
        index: m.cfg.index,
        fsname: m.cfg.fsname,
        nid: this.o.nid,
        failnodes,
        mode,
        instance: t.instance,
        writeconf,
      })
      .then(
        async () => {
          this.log.info({ writeconf }, `${t.name}: registered with the MGS${writeconf ? ' (writeconf: its configuration regenerated)' : ''}`)
          // Done once: later starts add to what the MGS knows, as usual.
          if (writeconf && this.mounts.get(m.dir) === m)
            await writeConfig(m.dir, { ...m.cfg, writeconf: undefined }, () => m.mmp.check()).catch((e) =>
              this.log.error({ err: (e as Error).message }, `${t.name}: clearing the writeconf mark in CONFIG failed; the next start regenerates again`),
            )
        },
        (e) => this.log.error({ err: (e as Error).message }, `${t.name}: registration with the MGS failed`),
      )
  }

  /** Stop the target(s) of `dir`; clean: commit and mark the MMP block released. */
  async unmount(dirArg: string, clean: boolean): Promise<void> {
    const dir = path.resolve(dirArg)
    const m = this.mounts.get(dir)
    if (!m) throw new LpError('ENOENT', `${dir} is not mounted on node ${this.o.name}`)
    this.mounts.delete(dir)
    for (const t of m.targets) this.targets.delete(t.name)
    await m.mgc?.close()
    await m.osp?.close()
    // A target whose final commit failed is stopped all the same: the others stop too, and the
    // MMP heartbeat ends (or the partner could never take over); the first error is thrown after.
    const failed: unknown[] = []
    for (const t of m.targets) await t.stop(clean).catch((e: unknown) => failed.push(e))
    await m.client?.close()
    await m.mmp.release(clean)
    if (this.mounts.size === 0 && this.starting.size === 0) {
      this.exiting = true
      this.o.onEmpty()
    }
    if (failed.length) throw failed[0]
  }

  private findTarget(req: TargetSelect): Target {
    if (typeof req.target === 'string') {
      const id = parseTargetName(req.target)
      const t = [...this.targets.values()].find((x) => x.name === req.target || (id && x.kind === id.kind && targetIndex(x.name) === id.index))
      if (t) return t
      throw new LpError('ENODEV', `target ${req.target} is not served by node ${this.o.name}`)
    }
    const dir = path.resolve(String(req.dir))
    const m = this.mounts.get(dir)
    if (!m) throw new LpError('ENODEV', `${dir} is not mounted on node ${this.o.name}`)
    const kind = req.kind
    return m.targets.find((t) => (kind ? t.kind === kind : t.kind !== 'mgs')) ?? m.targets[0]!
  }

  private async adminRequest(req: AdminRequest): Promise<unknown> {
    switch (req.cmd) {
      case 'mount':
        return {
          targets: await this.mountDir(req.dir, req.params ?? {}, {
            discardCorruptJournal: req.discard_corrupt_journal === true,
          }),
        }
      case 'umount':
        await this.unmount(req.dir, req.clean !== false)
        return {}
      case 'barrier': {
        const t = this.findTarget(req)
        return { target: t.name, last_committed: await t.barrier() }
      }
      case 'recovery_status': {
        const t = this.findTarget(req)
        return { target: t.name, ...t.recoveryStatus() }
      }
      case 'abort_recovery': {
        const t = this.findTarget(req)
        return { target: t.name, aborted: t.abortRecovery() }
      }
      case 'evict': {
        const t = this.findTarget(req)
        if (!t.adminEvict(req.client)) throw new LpError('ENOENT', `${t.name} has no client ${req.client}`)
        return { target: t.name }
      }
      case 'lfsck': {
        const t = this.findTarget({ ...req, kind: 'mdt' })
        const mdt = [...this.mounts.values()].find((m) => m.targets.includes(t))?.mdt
        if (!mdt || t.kind !== 'mdt') throw new LpError('ENODEV', `${t.name} is not an MDT: lfsck runs on the MDT`)
        return { target: t.name, ...(await mdt.lfsck(req.fix === true)) }
      }
      case 'status':
        return this.status()
      case 'get_param':
        return getParamValues(serverParamTable(this.targets.values(), this.osps(), () => this.o.clock.wallNow()), req.patterns)
    }
  }

  private osps(): Osp[] {
    return [...this.mounts.values()].flatMap((m) => (m.osp ? [m.osp] : []))
  }

  served(): Iterable<Target> {
    return this.targets.values()
  }

  /** `fn` for each target served now and each one started later (/metrics watches their latencies). */
  watchTargets(fn: (t: Target) => void): void {
    this.targetWatchers.push(fn)
    for (const t of this.targets.values()) fn(t)
  }

  status(): unknown {
    return {
      node: this.o.name,
      nid: this.o.nid,
      pid: process.pid,
      port: this.o.port,
      tls: this.o.tls !== undefined,
      mounts: [...this.mounts.values()].map((m) => ({
        dir: m.dir,
        targets: m.targets.map((t) => ({
          name: t.name,
          kind: t.kind,
          instance: t.instance,
          recovering: t.recovering,
          last_committed: t.lastCommitted,
          last_transno: t.lastTransno,
          barrier: t.barrierSet,
          clients: t.clients(),
        })),
      })),
    }
  }

  /** Stop everything (SIGTERM): clean unmounts. */
  async shutdown(): Promise<void> {
    for (const dir of [...this.mounts.keys()]) await this.unmount(dir, true).catch(() => undefined)
    await this.close()
  }

  async close(): Promise<void> {
    this.admin?.close()
    await fsp.rm(this.socketPath, { force: true })
    await this.front?.close()
  }
}

function targetIndex(name: string): number {
  return parseTargetName(name)?.index ?? -1
}

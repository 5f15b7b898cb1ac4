/**
 * The no-FUSE integration tier: real server nodes on loopback (forked dist/server/main.js, so
 * a SIGKILL by PID is a real node crash) in the shape of the embedded cluster (an MGS+MDT
 * failover pair mds1/mds2, OST0001 on oss1 failing over to oss2), and any number of assembled
 * clients (ClientFs: MGC, MDC, OSC, LOV, llite) in the test process, each its own PtlrpcClient
 * UUID, driven through llite's API.
 *
 * A client's network can be held (a partition: what it sends waits until released) or cut (the
 * client crashed: it never sends anything again, not even a disconnect).
 *
 *   const t = await Tier.up({ net: '127.0.85', port: 28500 })   // afterEach: t.down()
 *   const a = await t.client('a')
 *   await t.barrier('mdt0')
 *   await a.write('/d/f', data)
 *   const mds = await t.failover('mdt0')                          // SIGKILL, then the partner
 *   await t.recovered('mdt0')
 *
 * Build first (npx tsc -p tsconfig.json): the nodes run the compiled server.
 */
import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { vi } from 'vitest'
import { ClientFs } from '../../src/client/fs.js'
import { DEFAULT_OPTIONS, type ClientOptions } from '../../src/client/options.js'
import { realClock } from '../../src/common/clock.js'
import { readKeyFile, signingKeyOf } from '../../src/common/keyfile.js'
import type { SigningKey } from '../../src/protocol/auth.js'
import { createLogger } from '../../src/common/log.js'
import { Llite, ROOT_FID } from '../../src/llite/llite.js'
import { O_RDONLY, O_WRONLY } from '../../src/llite/file.js'
import type { PosixStat } from '../../src/llite/stat.js'
import { withMgs } from '../../src/mgc/oneshot.js'
import { nidList } from '../../src/protocol/nid.js'
import type { MdtAttr } from '../../src/protocol/ops.js'
import { Transport, TransportError, type RawReply, type RpcTransport } from '../../src/ptlrpc/transport.js'
import type { RecoveryStatusView } from '../../src/server/target/recovery.js'
import { NodeSet, formatMgsMdt, formatOst, type NodeProc } from './nodes.js'

export type NodeName = 'mds1' | 'mds2' | 'oss1' | 'oss2'
export type TargetKey = 'mdt0' | 'ost1'

const HOSTS: Record<NodeName, number> = { mds1: 1, mds2: 2, oss1: 11, oss2: 12 }
const PAIRS: Record<TargetKey, [NodeName, NodeName]> = { mdt0: ['mds1', 'mds2'], ost1: ['oss1', 'oss2'] }
export const TARGET_NAMES: Record<TargetKey, string> = { mdt0: 'spfs-MDT0000', ost1: 'spfs-OST0001' }

export interface TierOptions {
  /** The first three octets of the loopback /24 the nodes bind to. */
  net: string
  port: number
  /** obd_timeout of servers and clients, seconds (pings every timeout/4, eviction after 1.5 x). */
  timeout?: number
  commitInterval?: number
  mmpInterval?: number
  /** Recovery windows, seconds (default: 1.5 x and 9 x the timeout). */
  recoverySoft?: number
  recoveryHard?: number
  /** Where the targets and logs live (e.g. a loop-mounted filesystem); default a temp dir. */
  dir?: string
  /** Each node serves /metrics on its own address at this port. */
  metricsPort?: number
  /** Format with a shared key (`<root>/master.key`); clients sign with its fs key. */
  keyed?: boolean
}

export type RecoveryView = RecoveryStatusView & { target: string }

/** What nodes answer to `status` on their admin socket (the fields tests read). */
interface NodeStatus {
  mounts: Array<{ targets: Array<{ name: string; recovering: boolean; last_committed: number; last_transno: number; clients: Array<{ uuid: string; connected: boolean }> }> }>
}

export class Tier {
  readonly nodes = new NodeSet()
  root = ''
  readonly timeout: number
  private readonly at = new Map<TargetKey, NodeProc>()
  private readonly clients = new Set<TierClient>()
  private looks = 0
  /** The clients' key on a keyed tier. */
  key?: SigningKey

  private constructor(readonly o: TierOptions) {
    this.timeout = o.timeout ?? 4
  }

  /** Format the targets and start each on its primary node. */
  static async up(o: TierOptions): Promise<Tier> {
    const t = new Tier(o)
    try {
      const tmp = await t.nodes.tempDir('lp-tier')
      t.root = o.dir ?? tmp
      const params = [
        `sys.timeout=${t.timeout}`,
        `commit_interval=${o.commitInterval ?? 0.2}`,
        `mmp_interval=${o.mmpInterval ?? 0.2}`,
        ...(o.recoverySoft ? [`recovery_time_soft=${o.recoverySoft}`] : []),
        ...(o.recoveryHard ? [`recovery_time_hard=${o.recoveryHard}`] : []),
      ]
      const keyFile = o.keyed ? path.join(t.root, 'master.key') : undefined
      await formatMgsMdt({ dir: t.dir('mdt0'), port: o.port, failnodes: [t.nid('mds2')], params, keyFile })
      await formatOst({ dir: t.dir('ost1'), index: 1, mgsnode: t.mgsnode, port: o.port, failnodes: [t.nid('oss2')], params, keyFile })
      if (keyFile) t.key = signingKeyOf(await readKeyFile(keyFile), 'fs')
      await t.start('mdt0', 'mds1')
      await t.start('ost1', 'oss1')
      // The OST registers with the MGS after it serves: clients that came earlier would not know it.
      await vi.waitFor(
        async () => {
          const cfg = await withMgs(nidList(t.mgsnode), o.port, (m) => m.config(), undefined, { key: t.key })
          if (!cfg.targets.some((x) => x.name === TARGET_NAMES.ost1)) throw new Error(`${TARGET_NAMES.ost1} is not registered with the MGS yet`)
        },
        { timeout: 20_000, interval: 50 },
      )
      return t
    } catch (e) {
      await t.down()
      throw e
    }
  }

  nid(node: NodeName): string {
    return `${this.o.net}.${HOSTS[node]}@tcp`
  }

  /** Where `node` serves /metrics (with the metricsPort option). */
  metricsAddress(node: NodeName): string {
    return `${this.o.net}.${HOSTS[node]}:${this.o.metricsPort}`
  }

  get mgsnode(): string {
    return `${this.nid('mds1')}:${this.nid('mds2')}`
  }

  dir(key: TargetKey): string {
    return path.join(this.root, key)
  }

  log(node: NodeName): string {
    return path.join(this.root, 'logs', `${node}.log`)
  }

  /** The node process serving `key` now. */
  node(key: TargetKey): NodeProc {
    const n = this.at.get(key)
    if (!n?.alive) throw new Error(`${key} is not served`)
    return n
  }

  /** Start `key` on `node` (a new node process); resolves once it serves (MMP checked). */
  async start(key: TargetKey, node: NodeName): Promise<NodeProc> {
    const metrics = this.o.metricsPort ? this.metricsAddress(node) : undefined
    const n = await this.nodes.start({ nid: this.nid(node), port: this.o.port, dir: this.dir(key), log: this.log(node), metrics })
    this.at.set(key, n)
    return n
  }

  /** SIGKILL the node serving `key`; returns which node that was. */
  async crash(key: TargetKey): Promise<NodeName> {
    const n = this.node(key)
    const name = (Object.keys(HOSTS) as NodeName[]).find((x) => this.nid(x) === n.nid)!
    await n.kill9()
    this.at.delete(key)
    return name
  }

  /** A node crash and the HA takeover: SIGKILL the node serving `key`, start `key` on the other node of its pair. */
  async failover(key: TargetKey): Promise<NodeProc> {
    const dead = await this.crash(key)
    const [a, b] = PAIRS[key]
    return this.start(key, dead === a ? b : a)
  }

  /** Replay barrier: the target commits what it has, then executes but commits nothing. */
  async barrier(key: TargetKey): Promise<number> {
    return (await this.node(key).admin<{ last_committed: number }>({ cmd: 'barrier', target: TARGET_NAMES[key] })).last_committed
  }

  recoveryStatus(key: TargetKey): Promise<RecoveryView> {
    return this.node(key).admin<RecoveryView>({ cmd: 'recovery_status', target: TARGET_NAMES[key] })
  }

  /** The target's own view (last_committed, clients) from the node's `status`. */
  async targetStatus(key: TargetKey): Promise<NodeStatus['mounts'][0]['targets'][0]> {
    const s = await this.node(key).admin<NodeStatus>({ cmd: 'status' })
    const t = s.mounts.flatMap((m) => m.targets).find((x) => x.name === TARGET_NAMES[key])
    if (!t) throw new Error(`${TARGET_NAMES[key]} is not in the status of its node`)
    return t
  }

  /** Poll the target's recovery status until `ok` holds; returns that view. */
  async recoveryUntil(key: TargetKey, ok: (v: RecoveryView) => boolean, what: string, timeoutMs = 60_000): Promise<RecoveryView> {
    let last: RecoveryView | undefined
    return vi.waitFor(
      async () => {
        last = await this.recoveryStatus(key)
        if (!ok(last)) throw new Error(`${key}: still waiting for ${what}: ${JSON.stringify(last)}`)
        return last
      },
      { timeout: timeoutMs, interval: 50 },
    )
  }

  /** Wait for the end of the target's recovery. */
  recovered(key: TargetKey, timeoutMs = 60_000): Promise<RecoveryView> {
    return this.recoveryUntil(key, (v) => v.status === 'COMPLETE' || v.status === 'INACTIVE', 'the end of recovery', timeoutMs)
  }

  admin(key: TargetKey, req: Record<string, unknown>): Promise<Record<string, unknown>> {
    return this.node(key).admin({ ...req, target: TARGET_NAMES[key] })
  }

  /** Every object file under the OST's O/ directory, as paths relative to it. */
  async ostObjects(): Promise<string[]> {
    const base = path.join(this.dir('ost1'), 'ost')
    const out: string[] = []
    const walk = async (rel: string): Promise<void> => {
      for (const e of await fsp.readdir(path.join(base, rel), { withFileTypes: true })) {
        const r = path.join(rel, e.name)
        if (e.isDirectory()) await walk(r)
        else out.push(r)
      }
    }
    await walk('O')
    return out.sort()
  }

  /** A new client (`options`: its mount options): reads the configuration from the MGS and connects; resolves once the MDT import is FULL. */
  async client(name: string, options: Partial<ClientOptions> = {}): Promise<TierClient> {
    const net = new Switch(new Transport({ port: this.o.port, key: this.key }))
    const log = createLogger({ name: `client-${name}`, file: path.join(this.root, 'logs', `client-${name}.log`), level: 'debug' })
    const fs = await ClientFs.connect({ mgsnode: this.mgsnode, port: this.o.port, options: { ...DEFAULT_OPTIONS, timeout: this.timeout, ...options }, clock: realClock, log, transport: net, key: this.key })
    const c = new TierClient(name, fs, net, () => this.clients.delete(c))
    this.clients.add(c)
    return c
  }

  /**
   * Look with a client that connects now (so nothing it cached can hide what the targets
   * hold), then unmount it cleanly.
   */
  async fresh<T>(look: (c: TierClient) => Promise<T>): Promise<T> {
    const c = await this.client(`fresh${++this.looks}`)
    try {
      return await look(c)
    } finally {
      await c.close()
    }
  }

  /** Clients still connected die (cut: no disconnect), every node is SIGKILLed, the temp dirs go. */
  async down(): Promise<void> {
    await Promise.all([...this.clients].map((c) => c.die()))
    await this.nodes.cleanup()
  }
}

/**
 * A transport a test can hold (a partition: what is sent waits, or fails at its deadline,
 * until released) or cut for good (a crash: nothing leaves the client any more).
 */
class Switch implements RpcTransport {
  private mode: 'up' | 'held' | 'cut' = 'up'
  private waiting: Array<() => void> = []

  constructor(private readonly inner: Transport) {}

  // Every argument passes through as the import gave it (routes, owners: whatever the transport takes).
  send(...a: Parameters<RpcTransport['send']>): Promise<RawReply> {
    if (this.mode === 'cut') return Promise.reject(new TransportError('conn', 'the client is dead'))
    if (this.mode === 'up') return this.inner.send(...a)
    const signal = a[4]
    return new Promise<void>((resolve, reject) => {
      const go = () => {
        signal.removeEventListener('abort', stop)
        resolve()
      }
      const stop = () => {
        this.waiting = this.waiting.filter((w) => w !== go)
        reject(new TransportError('timeout', `held by the test: ${String((signal.reason as Error)?.message ?? signal.reason)}`))
      }
      if (signal.aborted) return stop()
      signal.addEventListener('abort', stop, { once: true })
      this.waiting.push(go)
    }).then(() => this.send(...a))
  }

  hold(): void {
    if (this.mode === 'up') this.mode = 'held'
  }

  release(): void {
    if (this.mode === 'held') this.mode = 'up'
    for (const go of this.waiting.splice(0)) go()
  }

  cut(): void {
    this.mode = 'cut'
    this.release()
  }

  reset(...a: Parameters<RpcTransport['reset']>): void {
    this.inner.reset(...a)
  }

  close(): Promise<void> {
    return this.inner.close()
  }
}

/** One assembled client and path-based helpers over its llite. */
export class TierClient {
  /** Every invalidation of one of its imports (an eviction, a deactivation), in order. */
  readonly invalidations: Array<{ target: string; reason: string }> = []
  private gone = false

  constructor(
    readonly name: string,
    readonly fs: ClientFs,
    private readonly net: Switch,
    private readonly forget: () => void,
  ) {
    for (const imp of fs.imports()) imp.on('invalidate', (reason: string) => this.invalidations.push({ target: imp.target, reason }))
  }

  get uuid(): string {
    return this.fs.client.uuid
  }

  get llite(): Llite {
    return this.fs.llite
  }

  /** Whether the target `name` (e.g. spfs-MDT0000) invalidated this client's import since it connected. */
  evictedBy(target: string): boolean {
    return this.invalidations.some((i) => i.target === target)
  }

  /**
   * The invalidations by the MDT and the OSTs: what loses work. (The MGS is not replayable:
   * its import is invalidated whenever the MGS restarts, as Lustre's MGC's is.)
   */
  evictions(): Array<{ target: string; reason: string }> {
    return this.invalidations.filter((i) => i.target !== 'MGS')
  }

  /** A partition: nothing the client sends arrives until release(). */
  hold(): void {
    this.net.hold()
  }

  release(): void {
    this.net.release()
  }

  /** The client crashes: it sends nothing more, no disconnect; its imports and sockets are torn down locally. */
  async die(): Promise<void> {
    if (this.gone) return
    this.gone = true
    this.net.cut()
    await this.fs.close()
    this.forget()
  }

  /** A clean unmount: the imports disconnect. */
  async close(): Promise<void> {
    if (this.gone) return
    this.gone = true
    await this.fs.close()
    this.forget()
  }

  // ---- paths over llite ----

  private split(p: string): { parent: string; name: string } {
    const i = p.lastIndexOf('/')
    return { parent: p.slice(0, i) || '/', name: p.slice(i + 1) }
  }

  async attr(p: string): Promise<MdtAttr> {
    let a = await this.llite.attr(ROOT_FID)
    for (const name of p.split('/').filter(Boolean)) a = await this.llite.lookup(a.fid, name)
    return a
  }

  async fid(p: string): Promise<number> {
    return (await this.attr(p)).fid
  }

  async mkdir(p: string): Promise<MdtAttr> {
    const { parent, name } = this.split(p)
    return this.llite.mkdir(await this.fid(parent), name, 0o755)
  }

  /** Create (exclusively) and write a file, then close it: its data went to the OST and was answered. */
  async write(p: string, data: Buffer = Buffer.alloc(0)): Promise<MdtAttr> {
    const { parent, name } = this.split(p)
    const { fd, attr } = await this.llite.create(await this.fid(parent), name, 0o644, O_WRONLY)
    try {
      if (data.length) await this.llite.write(fd, data, 0)
    } finally {
      await this.llite.release(fd)
    }
    return attr
  }

  /** Write into an existing file at `off`, then close it; with `sync`, fsync first (committed on the OSTs). */
  async pwrite(p: string, data: Buffer, off = 0, sync = false): Promise<void> {
    const fd = await this.llite.open(await this.fid(p), O_WRONLY)
    try {
      await this.llite.write(fd, data, off)
      if (sync) await this.llite.fsync(fd, true)
    } finally {
      await this.llite.release(fd)
    }
  }

  async stat(p: string): Promise<PosixStat> {
    return this.llite.stat(await this.fid(p))
  }

  async read(p: string): Promise<Buffer> {
    const fid = await this.fid(p)
    const fd = await this.llite.open(fid, O_RDONLY)
    try {
      const size = (await this.llite.stat(fid)).size
      const parts: Buffer[] = []
      let off = 0
      while (off < size) {
        const got = Buffer.concat(await this.llite.read(fd, off, size - off))
        if (!got.length) break
        parts.push(got)
        off += got.length
      }
      return Buffer.concat(parts)
    } finally {
      await this.llite.release(fd)
    }
  }

  /** The names in a directory, sorted. */
  async names(p: string): Promise<string[]> {
    return (await this.llite.readdir(await this.fid(p)))
      .map((e) => e.name)
      .filter((n) => n !== '.' && n !== '..')
      .sort()
  }

  async unlink(p: string): Promise<void> {
    const { parent, name } = this.split(p)
    await this.llite.unlink(await this.fid(parent), name)
  }

  async rename(from: string, to: string): Promise<void> {
    const a = this.split(from)
    const b = this.split(to)
    await this.llite.rename(await this.fid(a.parent), a.name, await this.fid(b.parent), b.name)
  }

  /** Every regular file under `dir` (recursively), path -> bytes. */
  async tree(dir: string): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>()
    const walk = async (d: string): Promise<void> => {
      for (const e of await this.llite.readdir(await this.fid(d))) {
        if (e.name === '.' || e.name === '..') continue
        const p = `${d}/${e.name}`
        if (e.type === 'dir') await walk(p)
        else if (e.type === 'reg') out.set(p, await this.read(p))
      }
    }
    await walk(dir)
    return out
  }
}

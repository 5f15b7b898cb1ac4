import type { Clock } from '../common/clock.js'
import type { Logger } from '../common/log.js'
import { loadTls, type TlsMaterial } from '../common/tls.js'
import { LpError, errnoOf } from '../protocol/errno.js'
import { nidList } from '../protocol/nid.js'
import type { FsConfig, TargetInfo } from '../protocol/ops.js'
import { PtlrpcClient } from '../ptlrpc/client.js'
import { Import } from '../ptlrpc/import.js'
import type { RpcTransport } from '../ptlrpc/transport.js'
import type { SigningKey } from '../protocol/auth.js'
import { Mgc } from '../mgc/mgc.js'
import { followMgs } from '../mgc/follow.js'
import { Mdc } from '../mdc/mdc.js'
import { Osc } from '../osc/osc.js'
import { CapaCache } from '../osc/capas.js'
import { OscWriteback } from '../osc/writeback.js'
import { Lov } from '../lov/lov.js'
import { Llite } from '../llite/llite.js'
import type { ClientOptions } from './options.js'

/**
 * A mounted filesystem's client stack without FUSE: MGC, the MDT import, one OSC per OST,
 * LOV and llite. The mount daemon puts FUSE on top; tests drive it directly.
 */
const MiB = 1024 * 1024

export interface ClientFsOptions {
  mgsnode: string
  /** The filesystem the MGS must serve; any when absent. */
  fsname?: string
  port: number
  options: ClientOptions
  clock: Clock
  log: Logger
  /** The RPC transport (default: HTTP to the NIDs); tests pass one they can cut, as a client's crash cuts it. */
  transport?: RpcTransport
  /** The filesystem's shared key (-o keyfile=): every RPC signed with it. */
  key?: SigningKey
}

export class ClientFs {
  readonly client: PtlrpcClient
  readonly mgc: Mgc
  config!: FsConfig
  mdc!: Mdc
  lov!: Lov
  llite!: Llite
  readonly id: string

  private constructor(
    private readonly o: ClientFsOptions,
    tls: TlsMaterial | undefined,
  ) {
    this.client = new PtlrpcClient(o.clock, o.log, o.port, { transport: o.transport, key: o.key, tls })
    this.client.tunables.timeout = o.options.timeout
    this.id = this.client.uuid.slice(0, 8)
    this.mgc = new Mgc(this.client, nidList(o.mgsnode), o.log, `MGC${nidList(o.mgsnode)[0]}`)
  }

  /** Read the configuration from the MGS and connect every import; returns once the MDT is FULL. */
  static async connect(o: ClientFsOptions): Promise<ClientFs> {
    const fs = new ClientFs(o, o.options.tls && (await loadTls(o.options.tls)))
    try {
      await fs.setup()
      return fs
    } catch (e) {
      await fs.close()
      throw e
    }
  }

  private async setup(): Promise<void> {
    const { log, options } = this.o
    this.mgc.start()
    await reachable(this.mgc.import, 'the MGS', this.o.port)
    this.config = await this.mgc.config(this.o.fsname)
    const mdt = this.config.targets.find((t) => t.kind === 'mdt')
    if (!mdt) throw new LpError('ENODEV', `filesystem '${this.config.fsname}' has no MDT registered with the MGS yet`)
    const mdtImp = this.newImport(mdt, 'mdc')
    this.mdc = new Mdc(mdtImp, { clock: this.o.clock, log })
    const oscs = new Map<number, Osc>()
    const caches = new Map<number, OscWriteback>()
    // Renewed by a getattr of the file, naming an open of it here if there is one: the renewal
    // runs as whichever caller's request needs it (write-back: anyone's), so only the open
    // says what the file's writer may do.
    const capas = new CapaCache(async (fid) => (await this.mdc.getattr(fid, this.llite.openHandle(fid))).layout?.capa, () => this.o.clock.wallNow())
    for (const t of this.config.targets.filter((x) => x.kind === 'ost')) {
      const imp = this.newImport(t, 'osc')
      if (!t.active) imp.deactivate()
      const osc = new Osc(t.index, imp, { maxUnstableBytes: options.maxUnstableMb * MiB }, capas)
      oscs.set(t.index, osc)
      caches.set(
        t.index,
        new OscWriteback(
          osc,
          { maxRpcBytes: options.maxPagesPerRpc * 4096, maxRpcsInFlight: options.maxRpcsInFlight, maxDirtyBytes: options.maxDirtyMb * MiB, dirtyExpireMs: 1000 },
          this.o.clock,
          log,
        ),
      )
    }
    this.lov = new Lov(oscs, caches, capas)
    this.llite = new Llite({
      mdc: this.mdc,
      lov: this.lov,
      clock: this.o.clock,
      log,
      attrTimeoutMs: options.actimeo * 1000,
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
      readAheadChunk: options.maxPagesPerRpc * 4096,
      maxReadAheadPerFile: options.maxReadAheadPerFileMb * MiB,
      maxReadAhead: options.maxReadAheadMb * MiB,
    })
    // Evicted by the MDT: what we cached of the namespace may be stale, and our opens are gone.
    mdtImp.on('invalidate', () => this.llite.cache.clear())
    // An OST lost: bytes and sizes read from its objects must not outlive the import.
    for (const o of oscs.values()) o.imp.on('invalidate', () => this.llite.objectsLost(o.index))
    mdtImp.connect()
    for (const o of oscs.values()) o.imp.connect()
    followMgs(this.mgc, this.config, { ir: options.ir, log, importOf: (name) => this.imports().find((i) => i.target === name) })
    await reachable(mdtImp, mdt.name, this.o.port)
  }

  private newImport(t: TargetInfo, type: 'mdc' | 'osc'): Import {
    return new Import({ client: this.client, target: t.name, name: `${t.name}-${type}-${this.id}`, nids: t.nids, log: this.o.log })
  }

  get options(): ClientOptions {
    return this.o.options
  }

  imports(): Import[] {
    const out = [this.mgc.import]
    if (this.mdc) out.push(this.mdc.imp)
    if (this.lov) for (const o of this.lov.oscs.values()) out.push(o.imp)
    return out
  }

  async close(): Promise<void> {
    if (this.lov) await Promise.all([...this.lov.oscs.values()].map((o) => o.imp.close()))
    if (this.mdc) await this.mdc.imp.close()
    await this.mgc.close()
    await this.client.close()
  }
}

/**
 * Wait for an import to be FULL, but give up after two full cycles through its connection
 * list in which no target answered. A target in recovery (EBUSY to new clients) answers:
 * the mount waits for its recovery to end, as Lustre's does.
 */
function reachable(imp: Import, what: string, port: number): Promise<void> {
  if (imp.state === 'FULL') return Promise.resolve()
  return new Promise((resolve, reject) => {
    let cycles = 0
    const on = (s: string) => {
      if (s === 'FULL') {
        imp.off('state', on)
        resolve()
      } else if (s === 'DISCONN' && imp.lastConnectStatus === -errnoOf('EACCES')) {
        imp.off('state', on)
        reject(new LpError('EACCES', `${what} refused the connection as not authenticated: a filesystem with a shared key needs -o keyfile= with its key, one without refuses a keyed client (the server's log says which)`))
      } else if (s === 'DISCONN' && imp.lastConnectStatus !== -errnoOf('EBUSY') && ++cycles >= 2) {
        imp.off('state', on)
        const why = imp.lastConnectError ? `: ${imp.lastConnectError}` : ''
        reject(new LpError('EIO', `cannot reach ${what} at ${imp.conns.map((c) => c.nid).join(', ')} (port ${port})${why}`))
      }
    }
    imp.on('state', on)
  })
}

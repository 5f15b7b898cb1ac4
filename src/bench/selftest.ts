import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { promises as fsp } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pTimeout from 'p-timeout'
import { issueCert, makeCa } from '../common/certs.js'
import { silentLogger } from '../common/log.js'
import { loadTls, type TlsMaterial } from '../common/tls.js'
import { DATA_PROCESS_FLAGS } from '../common/v8flags.js'
import type { MdtAttr } from '../protocol/ops.js'
import { Transport } from '../ptlrpc/transport.js'
import { LowLevelFuse } from '../fuse/lowlevel.js'
import { createFront, type FrontTarget } from '../server/front.js'
import { Guard } from '../server/guard.js'
import { realClock } from '../common/clock.js'
import { readKeyFile, signingKeyOf } from '../common/keyfile.js'
import type { SigningKey } from '../protocol/auth.js'
import { Cleanup } from './cleanup.js'
import type { Figure } from './figures.js'
import { FloorFs, type Rpc } from './floorfs.js'
import { ChildMount } from './fs/child.js'
import { memoryDir } from './fs/storage.js'
import { plan } from './jobs.js'
import { Live } from './live.js'
import { compactJson, defaultName, gitInfo, hostInfo } from './report.js'
import { runOn } from './run.js'
import { killWorkers } from './runner.js'
import { median } from './timeline.js'

/**
 * `lproxy selftest`, in the spirit of lnet_selftest: what one round trip costs on this
 * machine beneath lproxy, so that RPC and metadata figures can be read against it. A client
 * process sends small requests one after another to a server process on loopback:
 * - echo: a node:net echo of REQUEST_BYTES and REPLY_BYTES, the socket floor;
 * - tcp: an mdt_getattr through lproxy's own RPC path on a `@tcp` NID, the client's Transport
 *   (binary messages) to a node's front, answered at once by a stand-in target: every RPC's
 *   cost but the target's work;
 * - http: the same on an `@http` NID (undici to the same front);
 * - tcp-tls, http-tls (with --tls): the same inside mutual TLS, a CA and two certificates
 *   made for the run: what TLS adds to every RPC once its connection is up;
 * each with both processes on one CPU and on two, since a wakeup on another CPU costs more
 * in a VM. Then the floor of the metadata mix: the bench's mix on a mount served by lproxy's
 * own FUSE binding over a filesystem with no work of its own (FloorFs), whose RPCs that
 * stand-in answers at once. No lproxy mount can create, stat or unlink faster on this machine.
 */
export const REQUEST_BYTES = 300
export const REPLY_BYTES = 200
const TARGET = 'selftest-MDT0000'
const ATTR: MdtAttr = { fid: 2, type: 'reg', mode: 0o644, uid: 0, gid: 0, nlink: 1, atime: 0, mtime: 0, ctime: 0, size: 0 }

export type FloorKind = 'echo' | 'tcp' | 'http' | 'tcp-tls' | 'http-tls'
const TLS_KINDS: readonly FloorKind[] = ['tcp-tls', 'http-tls']
export type Placement = 'one-cpu' | 'two-cpus'

export interface FloorFigure {
  kind: FloorKind
  placement: Placement
  /** Microseconds per round trip, one per repetition. */
  runs_us: number[]
  median_us: number
}

export interface SelftestReport {
  name: string
  date: string
  command: string
  git: Awaited<ReturnType<typeof gitInfo>>
  host: ReturnType<typeof hostInfo>
  settings: { count: number; repeat: number; host: string; request_bytes: number; reply_bytes: number; /** Every RPC signed with a shared key (--key-file). */ keyed: boolean; tls: boolean }
  figures: FloorFigure[]
  /** The metadata mix on the floor mount, without RPCs and with them (empty with --meta-files 0). */
  meta: MetaFloor[]
}

/**
 * `binding`: every call answered in memory; `rpcs`: each waits for the RPCs llite's would,
 * answered at once, on a `@tcp` NID; `rpcs-http`: the same on an `@http` NID.
 */
export type FloorMode = 'binding' | 'rpcs' | 'rpcs-http'
export const FLOOR_MODES: readonly FloorMode[] = ['binding', 'rpcs', 'rpcs-http']

export interface MetaFloor {
  mode: FloorMode
  files: number
  /** Per second, over the repetitions. */
  creates: Figure
  stats: Figure
  unlinks: Figure
  /** Every small file read back before its unlink as it was written. */
  verified: boolean
}

export interface SelftestOptions {
  host: string
  port: number
  count: number
  repeat: number
  /** Files of the metadata mix on the floor mount; 0 skips it. */
  metaFiles: number
  /** Also the RPC floors inside mutual TLS. */
  tls: boolean
  name?: string
  out: string
  command: string
  /** Whether the processes can be placed on CPUs (taskset), and how many CPUs there are. */
  cpus: number
  taskset: boolean
  /** A master key file: every RPC signed and checked with the shared key, to measure what that costs. */
  keyFile?: string
}

const SELF = fileURLToPath(import.meta.url)
/** How the processes of a keyed run learn the key file (the path, never the key). */
const KEY_ENV = 'LPROXY_SELFTEST_KEY_FILE'

/** The key of a keyed run: the front's guard and the client's fs key (neither without --key-file). */
async function selftestKey(): Promise<{ guard: Guard | null; key?: SigningKey }> {
  const file = process.env[KEY_ENV]
  if (!file) return { guard: null }
  const master = await readKeyFile(file)
  return { guard: new Guard(master, realClock), key: signingKeyOf(master, 'fs') }
}

/** Where the two processes run: CPU numbers for taskset, null for the scheduler's choice. */
interface Where {
  placement: Placement
  server: string | null
  client: string | null
}

/** Both placements where the machine allows (taskset and two CPUs), else the scheduler's choice. */
export function placements(cpus: number, taskset: boolean): Where[] {
  if (!taskset) return [{ placement: cpus > 1 ? 'two-cpus' : 'one-cpu', server: null, client: null }]
  const out: Where[] = [{ placement: 'one-cpu', server: '0', client: '0' }]
  if (cpus > 1) out.push({ placement: 'two-cpus', server: '1', client: '0' })
  return out
}

export async function runSelftest(o: SelftestOptions, say: (line: string) => void): Promise<{ report: SelftestReport; file: string }> {
  const date = new Date()
  const figures: FloorFigure[] = []
  if (o.keyFile) {
    await readKeyFile(o.keyFile)
    process.env[KEY_ENV] = path.resolve(o.keyFile)
  }
  // Ctrl-C leaves no server, client or floor mount running and no directory behind.
  const cleanup = new Cleanup()
  const untrap = cleanup.trap(say, killWorkers)
  const meta: MetaFloor[] = []
  try {
    const pki = o.tls ? await selftestPki(o.host) : null
    const rmPki = pki ? cleanup.push('the certificates', () => fsp.rm(pki, { recursive: true, force: true })) : async () => undefined
    const kinds: FloorKind[] = ['echo', 'tcp', 'http', ...(pki ? TLS_KINDS : [])]
    const cells = kinds.flatMap((kind) => placements(o.cpus, o.taskset).map((where) => ({ kind, where, runs: [] as number[] })))
    try {
      // Round-robin over the kinds, so that a machine whose load drifts weighs on each alike.
      for (let i = 0; i < o.repeat; i++) for (const c of cells) c.runs.push(await measure(c.kind, c.where, o, pki ?? '', cleanup))
    } finally {
      await rmPki()
    }
    for (const { kind, where, runs } of cells) {
      const f: FloorFigure = { kind, placement: where.placement, runs_us: runs, median_us: median(runs)! }
      say(`${kind.padEnd(8)} ${where.placement.padEnd(9)} ${f.median_us.toFixed(0).padStart(5)} us per round trip (runs: ${runs.map((r) => r.toFixed(0)).join(', ')})`)
      figures.push(f)
    }
    if (o.metaFiles) for (const mode of FLOOR_MODES) meta.push(await metaFloor(mode, o, say, cleanup))
  } finally {
    await cleanup.run(say)
    untrap()
  }
  const report: SelftestReport = {
    name: o.name ?? defaultName('selftest', date),
    date: date.toISOString(),
    command: o.command,
    git: await gitInfo(),
    host: hostInfo(),
    settings: { count: o.count, repeat: o.repeat, host: o.host, request_bytes: REQUEST_BYTES, reply_bytes: REPLY_BYTES, keyed: !!o.keyFile, tls: o.tls },
    figures,
    meta,
  }
  await fsp.mkdir(o.out, { recursive: true })
  const file = path.join(o.out, `${report.name}.json`)
  await fsp.writeFile(file, compactJson(report) + '\n')
  return { report, file }
}

/** A CA, the server's certificate for `host` and the client's, in a directory of their own (removed after the run). */
async function selftestPki(host: string): Promise<string> {
  const dir = await memoryDir('lproxy-selftest-pki-')
  const ca = await makeCa(dir, 'selftest-ca')
  await Promise.all([issueCert(ca, 'server', [host]), issueCert(ca, 'client', [])])
  return dir
}

/** The certificate `who` of the run's directory (see selftestPki); none for a plaintext kind. */
async function material(kind: FloorKind, pki: string, who: 'server' | 'client'): Promise<TlsMaterial | undefined> {
  if (!TLS_KINDS.includes(kind)) return undefined
  return loadTls({ ca: path.join(pki, 'ca.crt'), cert: path.join(pki, `${who}.crt`), key: path.join(pki, `${who}.key`) })
}

/** One repetition: a server process, then a client process that reports microseconds per round trip. */
async function measure(kind: FloorKind, where: Where, o: SelftestOptions, pki: string, cleanup: Cleanup): Promise<number> {
  const server = start(where.server, ['serve', kind, o.host, String(o.port), pki])
  let client: ChildProcess | null = null
  const stopBoth = cleanup.push(`the ${kind} server and client`, () => Promise.all([server, client].map((c) => c && stop(c))).then(() => undefined))
  try {
    await listening(server, kind, o)
    client = start(where.client, ['client', kind, o.host, String(o.port), String(o.count), pki])
    // Even at a millisecond per round trip: a client that takes longer is stuck.
    const ms = 10_000 + 2 * o.count
    const out = await pTimeout(firstLine(client, `${kind} client`), { milliseconds: ms, message: `${kind} client: no figure within ${ms / 1000} s` })
    const us = Number(out)
    if (!Number.isFinite(us) || us <= 0) throw new Error(`${kind} client: unexpected output '${out}'`)
    return us
  } finally {
    await stopBoth()
  }
}

/**
 * The bench's metadata mix, `repeat` times, on a floor mount (a child process, like the peers
 * of --compare) whose RPCs a stand-in server answers; the processes on the scheduler's CPUs.
 */
async function metaFloor(mode: FloorMode, o: SelftestOptions, say: (line: string) => void, cleanup: Cleanup): Promise<MetaFloor> {
  const work = await memoryDir('lproxy-selftest-')
  const rmWork = cleanup.push('the floor mount\'s directory', () => fsp.rm(work, { recursive: true, force: true }))
  const mnt = path.join(work, 'mnt')
  await fsp.mkdir(mnt)
  const server = start(null, ['serve', 'tcp', o.host, String(o.port)])
  const stopServer = cleanup.push('the stand-in server', () => stop(server))
  const what = mode === 'binding' ? 'no RPCs' : `RPCs answered at once (${mode === 'rpcs' ? '@tcp' : '@http'})`
  const fs = new ChildMount(`floor-${mode}`, `lproxy's FUSE binding over FloorFs, ${what}`, mnt, [process.execPath, ...DATA_PROCESS_FLAGS, SELF, 'floor', mode, o.host, String(o.port), mnt])
  const close = cleanup.push('the floor mount', () => fs.close())
  try {
    await listening(server, 'tcp', o)
    await fs.mount()
    const dir = path.join(mnt, 'selftest')
    const workload = { jobs: ['meta' as const], size: 0, blockSize: 0, randSize: 0, randSeconds: 0, metaFiles: o.metaFiles, repeat: o.repeat, seed: 1 }
    const r = await runOn({ fs, plan: plan(workload, dir), dir, tool: 'native', failover: null, live: new Live() })
    if (r.app_errors) throw new Error(`the metadata mix on the floor mount saw ${r.app_errors} errors: ${r.jobs.flatMap((j) => j.errors.first.map((e) => `${e.op}: ${e.error}`)).join('; ')}`)
    const meta: MetaFloor = { mode, files: o.metaFiles, creates: r.figures.creates!, stats: r.figures.stats!, unlinks: r.figures.unlinks!, verified: r.verified }
    const fig = (f: Figure) => `${f.median!.toFixed(0)} (runs: ${f.runs.map((x) => x.toFixed(0)).join(', ')})`
    say(`meta  ${mode.padEnd(9)} creates ${fig(meta.creates)}, stats ${fig(meta.stats)}, unlinks ${fig(meta.unlinks)} per s`)
    return meta
  } finally {
    await close()
    await stopServer()
    await rmWork()
  }
}

/** A server process has said it listens. */
function listening(server: ChildProcess, kind: FloorKind, o: SelftestOptions): Promise<string> {
  return pTimeout(firstLine(server, `${kind} server`), { milliseconds: 10_000, message: `${kind} server: not listening on ${o.host}:${o.port} within 10 s` })
}

async function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return
  const exited = once(c, 'exit')
  c.kill('SIGKILL')
  await exited
}

function start(cpu: string | null, args: string[]): ChildProcess {
  const argv = [process.execPath, SELF, ...args]
  const [cmd, ...rest] = cpu === null ? argv : ['taskset', '-c', cpu, ...argv]
  return spawn(cmd!, rest, { stdio: ['ignore', 'pipe', 'pipe'] })
}

/** The child's first line of output; its stderr if it exits first. */
function firstLine(child: ChildProcess, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = ''
    let err = ''
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString()
      const nl = out.indexOf('\n')
      if (nl >= 0) resolve(out.slice(0, nl).trim())
    })
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()))
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`${what} exited (${code}) before answering: ${err.trim().split('\n').pop() ?? ''}`)))
  })
}

/** The server side: echo a reply per request, or an lproxy node's front (both transports, in TLS for a -tls kind); prints "ready" once listening. */
async function serve(kind: FloorKind, host: string, port: number, pki: string): Promise<void> {
  const reply = Buffer.alloc(REPLY_BYTES, 0x79)
  const target: FrontTarget = {
    kind: 'mdt',
    guard: (await selftestKey()).guard,
    handle: async () => ({ http: 200, status: 0, transno: 0, lastCommitted: 0, flags: [], body: { attr: ATTR } }),
  }
  const srv =
    kind === 'echo'
      ? net.createServer((c) => {
          c.setNoDelay(true)
          c.on('data', () => c.write(reply))
        })
      : createFront(new Map([[TARGET, target]]), silentLogger, { tls: await material(kind, pki, 'server') }).server
  srv.listen(port, host, () => process.stdout.write('ready\n'))
}

/** One mdt_getattr through the RPC path per call, on the transport `net` selects, a signal per request as an import gives each. */
function rpcTo(transport: Transport, host: string, net: 'tcp' | 'http' = 'tcp'): Rpc {
  const nid = `${host}@${net}`
  let xid = 0
  return async () => {
    xid += 1
    const h = { target: TARGET, op: 'mdt_getattr', client: 'selftest', connCnt: 1, xid, lastXid: xid - 1, flags: [] }
    await transport.send(nid, h, { a: { fid: ATTR.fid } }, undefined, new AbortController().signal)
  }
}

/** The floor mount's daemon: in the foreground until unmounted (the kernel ends the session) or SIGTERM. */
async function floorMount(mode: FloorMode, host: string, port: number, mountpoint: string): Promise<void> {
  const transport = new Transport({ port, key: (await selftestKey()).key })
  const fs = new FloorFs(mode === 'binding' ? async () => undefined : rpcTo(transport, host, mode === 'rpcs' ? 'tcp' : 'http'))
  const fuse = new LowLevelFuse(fs, { mountpoint, fsname: 'lproxy-selftest', attrTimeoutS: 1, dev: false, log: silentLogger, ended: () => void end() })
  const end = async () => {
    await fuse.unmount()
    await transport.close()
    process.exit(0)
  }
  process.once('SIGTERM', () => void end())
  await fuse.mount()
}

/**
 * The client side: `count` round trips untimed, then `count` timed; prints microseconds per
 * round trip. The RPC path needs thousands before V8 has optimised it (300 left it a third slower).
 */
async function client(kind: FloorKind, host: string, port: number, count: number, pki: string): Promise<void> {
  const request = Buffer.alloc(REQUEST_BYTES, 0x78)
  let roundTrip: () => Promise<void>
  let close: () => Promise<void>
  if (kind === 'echo') {
    const sock = net.connect(port, host)
    sock.setNoDelay(true)
    await once(sock, 'connect')
    // Replies are small and never split on loopback; each 'data' answers one request.
    roundTrip = () =>
      new Promise((resolve) => {
        sock.once('data', () => resolve())
        sock.write(request)
      })
    close = async () => void sock.destroy()
  } else {
    const transport = new Transport({ port, connections: 1, key: (await selftestKey()).key, tls: await material(kind, pki, 'client') })
    roundTrip = rpcTo(transport, host, kind.startsWith('http') ? 'http' : 'tcp')
    close = () => transport.close()
  }
  for (let i = 0; i < count; i++) await roundTrip()
  const t0 = performance.now()
  for (let i = 0; i < count; i++) await roundTrip()
  const us = ((performance.now() - t0) * 1000) / count
  await close()
  process.stdout.write(`${us.toFixed(1)}\n`)
}

if (process.argv[1] === SELF) {
  const [role, ...args] = process.argv.slice(2)
  const fail = (e: unknown) => {
    process.stderr.write(`${(e as Error).message}\n`)
    process.exit(1)
  }
  if (role === 'serve') serve(args[0] as FloorKind, args[1]!, Number(args[2]), args[3] ?? '').catch(fail)
  else if (role === 'floor') floorMount(args[0] as FloorMode, args[1]!, Number(args[2]), args[3]!).catch(fail)
  else client(args[0] as FloorKind, args[1]!, Number(args[2]), Number(args[3]), args[4] ?? '').catch(fail)
}

/**
 * Helpers for tests that run real lproxy server nodes: temporary directories that are
 * always removed, target formatting, forking `dist/server/main.js` and waiting for its
 * IPC report, SIGKILL by PID, and the node's admin socket.
 *
 * Typical use:
 *
 *   const nodes = new NodeSet()                       // one per test file
 *   afterAll(() => nodes.cleanup())                   // kills what is left, removes temp dirs
 *   const root = await nodes.tempDir('dur')           // also sets LPROXY_RUN_DIR under it
 *   await formatOst({ dir: root + '/ost1', index: 1, mgsnode: '127.0.20.1@tcp', port })
 *   const n = await nodes.start({ nid: '127.0.20.2@tcp', port, dir: root + '/ost1' })
 *   await n.kill9()                                   // a node crash
 *
 * The node process is the compiled one: build first (`npx tsc -p tsconfig.json`, as
 * scripts/bootstrap.sh does before the tests).
 */
import { fork, type ChildProcess } from 'node:child_process'
import { existsSync, rmSync, promises as fsp } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { callJsonSocket } from '../../src/common/jsonsock.js'
import { nodeSocket } from '../../src/common/rundir.js'
import type { TlsFiles } from '../../src/common/tls.js'
import { tlsArgs } from '../../src/cluster/spawn.js'
import { formatTarget, type TargetConfig } from '../../src/server/target/config.js'
import { logTails, noInternalErrors } from './log.js'
import { pollUntil } from './poll.js'
import type { NodeStatus } from '../../src/cluster/admin.js'

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const NODE_MAIN = path.join(REPO, 'dist/server/main.js')

/** Temp dirs and node processes of this test process, not yet cleaned up. */
const temps = new Set<string>()
const children = new Set<ChildProcess>()
let netArmed = false

/**
 * A safety net for when no cleanup hook could run (a failing hook, an interrupted run): when
 * the test process exits, its nodes are SIGKILLed and its temp dirs removed.
 */
function armSafetyNet(): void {
  if (netArmed) return
  netArmed = true
  process.once('exit', () => {
    for (const c of children) if (c.pid) signal(c.pid, 'SIGKILL')
    for (const dir of temps) rmSync(dir, { recursive: true, force: true })
  })
}

/** A temporary directory (under the OS temp dir) that `removeTempDirs` deletes. */
export async function tempDir(prefix = 'lp-test'): Promise<string> {
  armSafetyNet()
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `${prefix}-`))
  temps.add(dir)
  return dir
}

export async function removeTempDirs(): Promise<void> {
  for (const dir of [...temps]) {
    await fsp.rm(dir, { recursive: true, force: true })
    temps.delete(dir)
  }
}

// ---- formatting (lproxy format) ----

export interface FormatCommon {
  dir: string
  port: number
  fsname?: string
  failnodes?: string[]
  /** The master key file (format --key-file), made if missing. */
  keyFile?: string
  /** `key=value` params, e.g. `commit_interval=0.2`, `mmp_interval=0.1`, `sys.timeout=5`. */
  params?: string[]
}

/** An MGS and MDT0 sharing one directory, as `lproxy format --mgs --mdt`. */
export function formatMgsMdt(o: FormatCommon): Promise<TargetConfig> {
  return formatTarget({ fsname: 'spfs', failnodes: [], params: [], ...o, mgs: true, mdt: true, ost: false, index: 0, reformat: true })
}

export function formatOst(o: FormatCommon & { index: number; mgsnode: string }): Promise<TargetConfig> {
  return formatTarget({ fsname: 'spfs', failnodes: [], params: [], ...o, mgs: false, mdt: false, ost: true, reformat: true })
}

// ---- node processes ----

export interface StartOptions {
  nid: string
  port: number
  dir: string
  /** Log file; default `<dir>/../<nid>.log`. */
  log?: string
  /** Target param overrides (`--params` JSON). */
  params?: Record<string, string>
  /** How long to wait for the node's IPC report. */
  timeoutMs?: number
  /** ADDR:PORT where the node serves /metrics. */
  metrics?: string
  /** Mutual TLS on the node's port and its own RPCs. */
  tls?: TlsFiles
}

export class NodeStartError extends Error {
  constructor(
    message: string,
    readonly errno?: string,
  ) {
    super(message)
  }
}

/** Signal a process we started; one that is already gone is fine. */
function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e
  }
}

/** A running node process. */
export class NodeProc {
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  private done = false

  constructor(
    readonly child: ChildProcess,
    readonly nid: string,
    readonly port: number,
    readonly dir: string,
    readonly targets: string[],
  ) {
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve({ code: child.exitCode, signal: child.signalCode })
      child.once('exit', (code, signal) => resolve({ code, signal }))
    })
    void this.exited.then(() => (this.done = true))
  }

  get pid(): number {
    return this.child.pid!
  }

  get alive(): boolean {
    return !this.done
  }

  /** A node crash: SIGKILL, resolved once the process is gone. */
  async kill9(): Promise<void> {
    if (this.done) return
    signal(this.pid, 'SIGKILL')
    await this.exited
  }

  /** A clean stop (SIGTERM: every target unmounted cleanly); SIGKILL if it takes too long. */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (this.done) return
    signal(this.pid, 'SIGTERM')
    const t = setTimeout(() => signal(this.pid, 'SIGKILL'), timeoutMs)
    await this.exited
    clearTimeout(t)
  }

  /** One admin request on the node's control socket (status, barrier, recovery_status, ...). */
  admin<T = Record<string, unknown>>(req: Record<string, unknown>, timeoutMs = 10_000): Promise<T> {
    return callJsonSocket<T>(nodeSocket(this.nid, this.port), req, timeoutMs)
  }
}

/**
 * Fork a node on `nid` serving the target(s) formatted in `dir`; resolves once it reports
 * that it serves them, rejects with NodeStartError when it reports a failure (e.g. EBUSY from
 * MMP) or exits first. The child inherits the environment, LPROXY_RUN_DIR included.
 */
/** Where a node logs unless told. */
const defaultLog = (o: StartOptions) => path.join(path.dirname(o.dir), `${o.nid}.log`)

export async function startNode(o: StartOptions): Promise<NodeProc> {
  if (!existsSync(NODE_MAIN)) throw new Error(`${NODE_MAIN} is missing: build first (npx tsc -p tsconfig.json)`)
  const args = ['--nid', o.nid, '--port', String(o.port), '--dir', o.dir, '--log', o.log ?? defaultLog(o)]
  if (o.params) args.push('--params', JSON.stringify(o.params))
  if (o.metrics) args.push('--metrics', o.metrics)
  if (o.tls) args.push(...tlsArgs(o.tls))
  armSafetyNet()
  const child = fork(NODE_MAIN, args, { env: process.env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.add(child)
  child.once('exit', () => children.delete(child))
  let timer: NodeJS.Timeout | undefined
  try {
    const msg = await new Promise<{ ok: boolean; targets?: string[]; error?: string; errno?: string }>((resolve, reject) => {
      timer = setTimeout(() => reject(new NodeStartError(`node ${o.nid} did not report within ${o.timeoutMs ?? 20_000} ms`)), o.timeoutMs ?? 20_000)
      child.once('message', (m) => resolve(m as { ok: boolean }))
      child.once('error', reject)
      child.once('exit', (code, signal) => reject(new NodeStartError(`node ${o.nid} exited (${signal ?? code}) before reporting`)))
    })
    if (!msg.ok) throw new NodeStartError(msg.error ?? 'start failed', msg.errno)
    return new NodeProc(child, o.nid, o.port, o.dir, msg.targets ?? [])
  } catch (e) {
    // Whatever went wrong, leave no process behind.
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await new Promise((r) => child.once('exit', r))
    }
    throw e
  } finally {
    clearTimeout(timer)
  }
}

/**
 * The nodes and temp dirs of one test file, cleaned up together: `cleanup()` in afterAll (or
 * afterEach) SIGKILLs every node still running, by PID, and removes the temp dirs.
 */
export class NodeSet {
  private readonly procs = new Set<NodeProc>()
  /** The log of every node started, checked for internal errors at cleanup. */
  private readonly logs = new Set<string>()
  private runDirSet = false

  /**
   * A temp dir. The first one also holds LPROXY_RUN_DIR (`<dir>/run`), where the nodes of
   * this test process put their admin sockets (and where `admin()` finds them).
   */
  async tempDir(prefix = 'lp-test'): Promise<string> {
    const dir = await tempDir(prefix)
    if (!this.runDirSet) {
      process.env.LPROXY_RUN_DIR = path.join(dir, 'run')
      this.runDirSet = true
    }
    return dir
  }

  private readonly starting = new Set<Promise<unknown>>()

  /** Start a node (see startNode); cleanup() also waits for starts still under way. */
  start(o: StartOptions): Promise<NodeProc> {
    this.logs.add(o.log ?? defaultLog(o))
    const p = startNode(o).then((n) => {
      this.procs.add(n)
      void n.exited.then(() => this.procs.delete(n))
      return n
    })
    const tracked = p.catch(() => undefined).finally(() => this.starting.delete(tracked))
    this.starting.add(tracked)
    return p
  }

  get running(): NodeProc[] {
    return [...this.procs]
  }

  /**
   * Until the MDT's OSP is connected to an OST of `oss`: the OST is registered with the MGS
   * then (an MDT refuses a layout naming an OST its MGS does not list), and a new connection
   * to it commits no more. Timed out, the error carries the nodes' logs.
   */
  async ospConnected(oss: NodeProc, ms = 15_000): Promise<void> {
    await pollUntil(
      'the MDT to connect to the OST',
      async () => (await oss.admin<NodeStatus>({ cmd: 'status' })).mounts.some((m) => m.targets.some((t) => t.clients.some((c) => /mdtlov/.test(c.uuid) && c.connected))),
      ms,
      100,
    ).catch(async (e: unknown) => {
      // What the MDT's imports of the OSTs say (osp.*.import): why it has not connected.
      const views = await Promise.all(this.running.map((p) => p.admin<unknown[]>({ cmd: 'get_param', patterns: ['osp.*.import'] }).catch((err: Error) => [err.message])))
      throw this.withLogs(new Error(`${(e as Error).message}\nosp.*.import: ${JSON.stringify(views.flat())}`))
    })
  }

  /** `e` with the end of every node's log: what a wait that timed out was waiting behind. */
  withLogs(e: unknown): Error {
    return new Error(`${(e as Error).message}\n${logTails(this.logs)}`)
  }

  async cleanup(): Promise<void> {
    // A start racing a failure elsewhere (Promise.all) must not leave its node behind.
    await Promise.all([...this.starting])
    await Promise.all([...this.procs].map((n) => n.kill9()))
    try {
      noInternalErrors(...this.logs)
    } finally {
      this.logs.clear()
      await removeTempDirs()
    }
  }
}

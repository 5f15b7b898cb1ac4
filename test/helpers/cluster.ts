import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll } from 'vitest'
import type { MoveResult } from '../../src/cluster/fail.js'
import type { ClusterFile } from '../../src/cluster/layout.js'
import type { ClusterStatus } from '../../src/cluster/status.js'
import { noInternalErrors } from './log.js'

/**
 * End-to-end helpers: run the real `lproxy` CLI (compiled, in dist/) against real node
 * processes in a temporary directory, and make sure nothing outlives the test file: every
 * workspace is torn down in afterAll (and, as a last resort, at process exit) by killing
 * every process whose command line names it, lazily unmounting every mount under it, and
 * removing it.
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const BIN = path.join(ROOT, 'bin', 'lproxy.js')

export interface CliResult {
  code: number
  stdout: string
  stderr: string
}

export class Workspace {
  /** Control sockets of everything started here (LPROXY_RUN_DIR). */
  readonly runDir: string

  constructor(readonly dir: string) {
    this.runDir = path.join(dir, 'run')
  }

  /** Run `lproxy ARGS` with this workspace's run dir; never throws for a non-zero exit. */
  cli(args: string[], timeoutMs = 60_000): Promise<CliResult> {
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        [BIN, ...args],
        { ...this.cliOptions(), timeout: timeoutMs },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : 128) : 0
          resolve({ code, stdout, stderr })
        },
      )
    })
  }

  /** Start `lproxy ARGS` with this workspace's run dir, for a test that acts while it runs (signals it, reads its output as it comes). */
  spawnCli(args: string[]): ChildProcess {
    return spawn(process.execPath, [BIN, ...args], { ...this.cliOptions(), stdio: ['ignore', 'pipe', 'pipe'] })
  }

  private cliOptions(): { cwd: string; env: NodeJS.ProcessEnv } {
    return { cwd: this.dir, env: { ...process.env, LPROXY_RUN_DIR: this.runDir } }
  }

  /** Run `lproxy ARGS` and return its stdout; throws with its stderr unless it exits 0. */
  async ok(args: string[], timeoutMs?: number): Promise<string> {
    const r = await this.cli(args, timeoutMs)
    if (r.code !== 0) throw new Error(`lproxy ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`)
    return r.stdout
  }

  /** PIDs of the processes whose command line names this workspace (nodes, mount daemons). */
  processes(): number[] {
    return pidsNaming(this.dir)
  }

  /** Mounts under this workspace. */
  mounts(): string[] {
    return mountsUnder(this.dir)
  }

  /** Kill what is left by PID, detach leftover mounts, remove the directory. */
  destroy(): void {
    for (const pid of this.processes()) kill(pid)
    for (const mp of this.mounts()) spawnSync('fusermount', ['-uz', mp])
    rmSync(this.dir, { recursive: true, force: true })
    live.delete(this)
  }
}

const live = new Set<Workspace>()
const clusters = new Map<Workspace, string>()

/** A fresh temporary workspace, torn down after the test file. */
export function workspace(prefix = 'lproxy-test-'): Workspace {
  if (!existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error(`lproxy is not built: run 'npx tsc -p tsconfig.json' in ${ROOT}`)
  const ws = new Workspace(mkdtempSync(path.join(os.tmpdir(), prefix)))
  live.add(ws)
  return ws
}

afterAll(async () => {
  for (const ws of [...live]) {
    const dir = clusters.get(ws)
    if (dir && existsSync(path.join(dir, 'cluster.json'))) await ws.cli(['cluster', 'down', '--dir', dir], 90_000)
    ws.destroy()
  }
})

// If afterAll never ran (a crash, a hook timeout), do the synchronous part at exit.
process.on('exit', () => {
  for (const ws of live) ws.destroy()
})

export interface ClusterOptions {
  net: string
  port: number
  /** Mount the filesystem (default true). */
  mount?: boolean
  /** Seconds, as `cluster up` takes them. */
  timeout?: number
  commitInterval?: number
  mmpInterval?: number
  recoverySoft?: number
  failout?: string[]
  /** `--param key=value` of `cluster up` (target parameters of every start). */
  params?: Record<string, string>
  /** Format with a shared key, as `cluster up` does by default (default false here: the tests' extra mounts carry none). */
  key?: boolean
  /** `cluster up --netns`: each node and the client in a network namespace of its own. */
  netns?: boolean
}

export interface FailOptions {
  soft?: boolean
  hang?: boolean
  /** Default true. */
  takeover?: boolean
  /** Seconds (default: the CLI's 1). */
  deadtime?: number
  /** `--partition`: cut the node's link, its process lives on (netns cluster). */
  partition?: boolean
  /** Default true: STONITH before takeover. */
  fence?: boolean
}

export interface ClusterHandle {
  ws: Workspace
  dir: string
  port: number
  /** Node name -> NID, as `cluster up` chose them. */
  nids: Record<string, string>
  mgsnode: string
  mountpoint: string | null
  fail(nodeOrTarget: string, opts?: FailOptions): Promise<MoveResult>
  failback(node: string): Promise<MoveResult>
  status(): Promise<ClusterStatus>
  /** `cluster down`: leaves no process and no mount (the directory stays until afterAll). */
  down(): Promise<void>
}

/** `lproxy cluster up` in a fresh workspace. */
export async function startCluster(o: ClusterOptions): Promise<ClusterHandle> {
  const ws = workspace('lproxy-cluster-')
  const dir = path.join(ws.dir, 'cluster')
  clusters.set(ws, dir)
  const args = ['cluster', 'up', '--dir', dir, '--net', o.net, '--port', String(o.port)]
  if (o.mount === false) args.push('--no-mount')
  if (!o.key) args.push('--no-key')
  if (o.netns) args.push('--netns')
  const secs: Array<[string, number | undefined]> = [
    ['--timeout', o.timeout],
    ['--commit-interval', o.commitInterval],
    ['--mmp-interval', o.mmpInterval],
    ['--recovery-soft', o.recoverySoft],
  ]
  for (const [flag, v] of secs) if (v !== undefined) args.push(flag, String(v))
  for (const f of o.failout ?? []) args.push('--failout', f)
  for (const [k, v] of Object.entries(o.params ?? {})) args.push('--param', `${k}=${v}`)
  await ws.ok(args)
  const cf = JSON.parse(readFileSync(path.join(dir, 'cluster.json'), 'utf8')) as ClusterFile
  const dirArgs = ['--dir', dir]
  return {
    ws,
    dir,
    port: cf.port,
    nids: Object.fromEntries(Object.entries(cf.nodes).map(([n, v]) => [n, v.nid])),
    mgsnode: `${cf.nodes.mds1!.nid}:${cf.nodes.mds2!.nid}`,
    mountpoint: o.mount === false ? null : cf.mount.mountpoint,
    async fail(what, f = {}) {
      const a = ['cluster', 'fail', what, '--json', ...dirArgs]
      if (f.soft) a.push('--soft')
      if (f.hang) a.push('--hang')
      if (f.takeover === false) a.push('--no-takeover')
      if (f.deadtime !== undefined) a.push('--deadtime', String(f.deadtime))
      if (f.partition) a.push('--partition')
      if (f.fence === false) a.push('--no-fence')
      return JSON.parse(await ws.ok(a)) as MoveResult
    },
    async failback(node) {
      return JSON.parse(await ws.ok(['cluster', 'failback', node, '--json', ...dirArgs])) as MoveResult
    },
    async status() {
      return JSON.parse(await ws.ok(['cluster', 'status', '--json', ...dirArgs])) as ClusterStatus
    },
    async down() {
      await ws.ok(['cluster', 'down', ...dirArgs], 90_000)
      noInternalErrors(path.join(dir, 'logs'))
    },
  }
}

function pidsNaming(dir: string): number[] {
  const out: number[] = []
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(dir)) out.push(Number(e))
    } catch {
      // Gone meanwhile.
    }
  }
  return out
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => (l.split(' ')[1] ?? '').replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((mp) => mp === dir || mp.startsWith(dir + '/'))
}

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    // Already gone.
  }
}

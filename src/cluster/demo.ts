import { promises as fsp } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { callJsonSocket } from '../common/jsonsock.js'
import { clientSocket } from '../common/rundir.js'
import { clusterDown } from './down.js'
import { clusterFail, type MoveResult } from './fail.js'
import { logOf } from './layout.js'
import { LocalCluster } from './local.js'
import { recoverySplit, type RecoverySplit } from './split.js'
import { clusterUp } from './up.js'
import { copyTreeInThread, verifyTreeInThread } from './treejob.js'
import type { CopyStats, VerifyStats } from './workload.js'

/**
 * `npm start`: the main job on the embedded cluster. Bring it up, copy a real tree into the
 * mount, fail a node in the middle of the copy (its partner takes over), verify every byte,
 * report what the application saw, tear everything down.
 */
export interface DemoOptions {
  source: string
  /** Node or target to fail when `failAt` of the bytes are copied; null: no failover. */
  fail: string | null
  failAt: number
  net: string
  port: number
  /** Keep the cluster directory (default: a temporary one, removed at the end). */
  dir?: string
  say: (line: string) => void
  /** Stops the demo (Ctrl-C): the copy ends where it is, the cluster is torn down all the same. */
  signal?: AbortSignal
}

export interface DemoReport {
  copy: CopyStats
  failover: MoveResult | null
  split: RecoverySplit[]
  replayed: { requests: number; bytes: number }
  verified: VerifyStats
}

interface ImportStatus {
  target: string
  replayed_requests: number
  replayed_bytes: number
}

export async function runDemo(o: DemoOptions): Promise<DemoReport> {
  const total = await treeBytes(o.source)
  const dir = o.dir ?? (await fsp.mkdtemp(path.join(os.tmpdir(), 'lproxy-demo-')))
  const t0 = Date.now()
  const clock = () => `+${((Date.now() - t0) / 1000).toFixed(1)}s`
  /** What starts nodes: the cluster's bring-up, then the failover's takeover. */
  const starts: { up: Promise<unknown> | null; move: Promise<MoveResult> | null } = { up: null, move: null }
  let down: Promise<void> | null = null
  const teardown = () =>
    (down ??= (async () => {
      // What starts nodes ends first: a node started after the teardown looked would be left running.
      await starts.up?.catch(() => undefined)
      await starts.move?.catch(() => undefined)
      const lc = await LocalCluster.open(dir).catch(() => null)
      if (lc) await clusterDown(lc, { purge: !o.dir })
      else if (!o.dir) await fsp.rm(dir, { recursive: true, force: true })
      o.say(`${clock()} cluster down${o.dir ? '' : ', directory removed'}`)
    })())
  // Stopped, the demo tears down at once: the copy may be blocked in the mount (a node down for
  // good, in failover mode), and only the teardown (the daemon gone) ends that.
  let onAbort: () => void = () => undefined
  const stopped = new Promise<never>((_, reject) => {
    onAbort = () => {
      void teardown().catch(() => undefined)
      reject(o.signal!.reason)
    }
    if (o.signal?.aborted) onAbort()
    else o.signal?.addEventListener('abort', onAbort, { once: true })
  })
  stopped.catch(() => undefined)

  const demo = async (): Promise<DemoReport> => {
    // Scaled-down Lustre constants: obd_timeout 20 s, commits every second.
    const bringUp = clusterUp({
      dir,
      mount: true,
      net: o.net,
      port: o.port,
      params: { 'sys.timeout': '20', commit_interval: '1', mmp_interval: '0.5' },
      reformat: true,
    })
    starts.up = bringUp
    const up = await bringUp
    o.signal?.throwIfAborted()
    const mnt = up.cluster.mount.mountpoint
    o.say(`${clock()} cluster up in ${dir}: ${up.placements.map((p) => `${p.target} on ${p.node}`).join(', ')}; mounted on ${mnt}`)
    const dst = path.join(mnt, path.basename(o.source))
    await fsp.mkdir(dst)
    o.say(`${clock()} copying ${o.source} (${mib(total)}) into ${dst}`)
    const copy = await copyTreeInThread(o.source, dst, (bytes) => {
      if (!o.fail || starts.move || bytes < total * o.failAt) return
      o.say(`${clock()} ${mib(bytes)} copied: failing ${o.fail} (power-off, then its partner takes over)`)
      starts.move = LocalCluster.open(dir).then((lc) => clusterFail(lc, { what: o.fail!, mode: 'kill', takeover: true, deadtimeMs: 1000 }))
    }, o.signal)
    const moved = starts.move ? await starts.move : null
    if (moved) for (const e of moved.timeline) o.say(`   failover +${(e.ms / 1000).toFixed(2)}s: ${e.event}`)
    o.say(`${clock()} copied ${copy.files} files, ${copy.dirs} directories, ${copy.symlinks} symlinks in ${(copy.ms / 1000).toFixed(1)} s`)
    const split = moved
      ? await Promise.all(
          moved.moved.map((m) => recoverySplit(logOf(dir, 'client'), up.cluster.targets[m.target]!.names.at(-1)!, m.at - m.ms, m.at)),
        )
      : []
    const st = await callJsonSocket<{ imports: ImportStatus[] }>(clientSocket(mnt), { cmd: 'status' })
    const replayed = st.imports.reduce((a, i) => ({ requests: a.requests + i.replayed_requests, bytes: a.bytes + i.replayed_bytes }), { requests: 0, bytes: 0 })
    o.say(`${clock()} verifying every byte`)
    const verified = await verifyTreeInThread(o.source, dst, o.signal)
    return { copy, failover: moved, split, replayed, verified }
  }

  const run = demo()
  // Once stopped, what the copy was blocked in fails as the mount goes: nothing waits for it then.
  run.catch(() => undefined)
  try {
    return await Promise.race([run, stopped])
  } finally {
    o.signal?.removeEventListener('abort', onAbort)
    await teardown()
  }
}

async function treeBytes(dir: string): Promise<number> {
  let n = 0
  for (const e of await fsp.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += (await fsp.stat(path.join(e.parentPath ?? e.path, e.name))).size
  }
  return n
}

export function mib(n: number): string {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`
}

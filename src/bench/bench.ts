import { randomInt } from 'node:crypto'
import { promises as fsp } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fuseMounts } from '../common/mounts.js'
import { Cleanup } from './cleanup.js'
import { Failover, type FailoverSpec } from './failover.js'
import { benchCluster } from './fs/cluster.js'
import { LproxyMount } from './fs/lproxy.js'
import { PEERS } from './fs/peers.js'
import { PlainDir } from './fs/plain.js'
import { memoryDir, storageOf } from './fs/storage.js'
import type { BenchFs } from './fs/types.js'
import { ensureTools, TOOLS } from './install.js'
import { plan, type Workload } from './jobs.js'
import type { Live } from './live.js'
import { defaultName, gitInfo, hostInfo, writeReport, type BenchReport } from './report.js'
import { runOn, type RunResult } from './run.js'
import { killWorkers } from './runner.js'

/**
 * `lproxy bench`: the workloads on the embedded cluster (or an existing mount), optionally
 * across a failover, optionally against the peers of `--compare`; then the record.
 */
export interface BenchOptions {
  mount?: string
  /** Cluster directory; default a new one on tmpfs, removed after. */
  dir?: string
  net: string
  port: number
  /** Tunables of the embedded cluster (sys.timeout); empty: its defaults. */
  params: Record<string, string>
  /** The embedded cluster with mutual TLS everywhere (cluster up --tls). */
  tls: boolean
  /** The embedded cluster formatted with a shared key, every RPC signed (cluster up's default). */
  key: boolean
  stripeCount: number
  workload: Omit<Workload, 'seed'>
  fio: boolean
  compare: boolean
  failover: FailoverSpec | null
  /** The embedded cluster in network namespaces (`cluster up --netns`); --mode partition needs it. */
  netns?: boolean
  name?: string
  out: string
  command: string
  live: Live
}

export interface BenchOutcome {
  report: BenchReport
  files: { json: string; svg: string }
  /** Peers that could not be set up, and why. */
  skipped: Array<{ fs: string; error: string }>
}

export async function runBench(o: BenchOptions): Promise<BenchOutcome> {
  if (o.failover?.mode === 'partition' && !o.netns) throw new Error('--mode partition cuts a network link: it needs --netns')
  if (o.mount && o.tls) throw new Error('--tls sets up the embedded cluster; it cannot be used with --mount (mount it with -o tls,...)')
  const date = new Date()
  const workload: Workload = { ...o.workload, seed: randomInt(2 ** 31) }
  const host = hostInfo()
  const say = (l: string) => o.live.say(l)
  const cleanup = new Cleanup()
  const untrap = cleanup.trap(say, killWorkers)
  const runs: RunResult[] = []
  const skipped: BenchOutcome['skipped'] = []
  const tool = o.fio ? 'fio' : 'native'
  const runFs = (fs: BenchFs, failover: Failover | null) => {
    const dir = path.join(fs.mountpoint, `lproxy-bench-${process.pid}`)
    return runOn({ fs, plan: plan(workload, dir), dir, tool, failover, live: o.live })
  }
  try {
    if (o.fio) await ensureTools([TOOLS.fio], say)
    if (o.mount) runs.push(await runFs(await existingMount(o.mount, o.stripeCount), null))
    else {
      say(`bringing up the embedded cluster${o.dir ? ` in ${o.dir}` : ' on tmpfs'}`)
      const c = await benchCluster({ dir: o.dir, net: o.net, port: o.port, params: o.params, tls: o.tls, key: o.key, stripeCount: o.stripeCount, netns: o.netns })
      const down = cleanup.push('the embedded cluster', () => c.down())
      say(`cluster up in ${c.dir}, mounted on ${c.fs.mountpoint}`)
      runs.push(await runFs(c.fs, o.failover ? new Failover(o.failover, c.dir, say) : null))
      await down()
    }
    if (o.compare) {
      const work = await memoryDir('lproxy-bench-peers-')
      cleanup.push('the peers directory', () => fsp.rm(work, { recursive: true, force: true }))
      for (const peer of PEERS) {
        try {
          await ensureTools(peer.tools, say)
          say(`${peer.name}: mounting`)
          const fs = await peer.open(work)
          const close = cleanup.push(`the ${peer.name} mount`, () => fs.close())
          say(`${peer.name}: ${fs.description}`)
          runs.push(await runFs(fs, null))
          await close()
        } catch (e) {
          say(`${peer.name}: skipped: ${(e as Error).message}`)
          skipped.push({ fs: peer.name, error: (e as Error).message })
        }
      }
    }
  } finally {
    await cleanup.run(say)
    untrap()
  }
  const kind = o.compare ? 'compare' : o.failover ? `failover-${o.failover.mode}` : 'bench'
  const report: BenchReport = {
    name: o.name ?? defaultName(o.fio ? `${kind}-fio` : kind, date),
    date: date.toISOString(),
    command: o.command,
    git: await gitInfo(),
    host: { ...host, loadavg_end: os.loadavg() },
    settings: { tool, workload, stripe_count: o.stripeCount, cluster_params: o.params, keyed: !o.mount && o.key, tls: o.tls, failover: o.failover },
    runs,
  }
  return { report, files: await writeReport(report, o.out), skipped }
}

async function existingMount(mp: string, stripeCount: number): Promise<BenchFs> {
  const abs = path.resolve(mp)
  if (!(await fsp.stat(abs).catch(() => null))?.isDirectory()) throw new Error(`--mount ${mp}: not a directory`)
  const m = (await fuseMounts()).find((x) => x.mountpoint === abs)
  if (m?.type === 'fuse.lproxy') return new LproxyMount(abs, `existing lproxy mount ${abs}`, stripeCount)
  return new PlainDir(abs, `directory ${abs} (not an lproxy mount; on ${await storageOf(abs)})`)
}

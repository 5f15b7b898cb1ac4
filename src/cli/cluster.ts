import type { Command } from 'commander'
import type { FailMode, MoveResult } from '../cluster/fail.js'
import { DEFAULT_DIR, DEFAULT_NET, DEFAULT_NETNS_NET } from '../cluster/layout.js'
import type { ClusterStatus } from '../cluster/status.js'
import { parseParams } from '../server/target/config.js'
import { UsageError } from './errors.js'
import { isNetFaultOnly, netFault, openCluster, registerHeal, type NetFaultCli } from './netfault.js'
import { CLIENT } from '../cluster/netns.js'
import { collect, command, print } from './server.js'
import { intParser, paramParser, portParser, secondsParser } from './parse.js'

/** `lproxy cluster ...`: the embedded local cluster and its fault injection (logic in src/cluster/). */
export function registerClusterCommands(program: Command): void {
  const cluster = program
    .command('cluster')
    .description('the embedded local cluster: MGS+MDT failover pair (mds1, mds2), two OSTs on an active/active OSS pair (oss1, oss2)')
  const dirOption = (c: Command) => c.option('--dir <dir>', 'cluster directory', DEFAULT_DIR)

  dirOption(command(cluster, 'up', 'format (when not yet formatted), start every target on its primary node, mount'))
    .option('--mount <mountpoint>', 'where to mount (default <dir>/mnt)')
    .option('--no-mount', 'start the servers only')
    .option('--net <a.b.c>', `/24 of the nodes (default ${DEFAULT_NET} on loopback, ${DEFAULT_NETNS_NET} with --netns: mds1 .1, mds2 .2, oss1 .11, oss2 .12, client .100)`)
    .option('--netns', 'every node and the client in a network namespace of its own, joined by veths to a bridge (lpnet-<3rd octet>-*)')
    .option('--no-netns', 'all on loopback again after a run with --netns (default: as the previous run)')
    .option('--port <port>', 'the filesystem-wide port (default 988)', portParser)
    .option('--timeout <s>', 'obd_timeout (sys.timeout) of servers and client', paramParser('timeout'))
    .option('--commit-interval <s>', 'journal commit interval of the targets', paramParser('commit_interval'))
    .option('--mmp-interval <s>', 'MMP update interval of the targets', paramParser('mmp_interval'))
    .option('--recovery-soft <s>', 'recovery_time_soft of the targets', paramParser('recovery_time_soft'))
    .option('--failout <ostN>', 'format this OST with failover.mode=failout (repeatable)', collect)
    .option('--param <key=value>', 'target parameter for every start, e.g. root_squash=65534:65534, nosquash_nids=127.0.0.1@tcp (repeatable)', collect)
    .option('--reformat', 'erase and format every target again')
    .option('--no-key', 'format without a shared key: RPCs are not authenticated (default: a key in <dir>/keys, used by the mount)')
    .option('--tls', 'mutual TLS everywhere: a CA and per-node certificates in <dir>/tls, targets formatted with tls=required (kept until --reformat)')
    .action(async (o: UpCli) => {
      const t0 = Date.now()
      const params = parseParams(o.param ?? [])
      const tunables: Array<[string, number | undefined]> = [
        ['sys.timeout', o.timeout],
        ['commit_interval', o.commitInterval],
        ['mmp_interval', o.mmpInterval],
        ['recovery_time_soft', o.recoverySoft],
      ]
      for (const [key, v] of tunables) if (v !== undefined) params[key] = String(v)
      const { clusterUp } = await import('../cluster/up.js')
      const r = await clusterUp({
        dir: o.dir,
        mountpoint: typeof o.mount === 'string' ? o.mount : undefined,
        mount: o.mount !== false,
        net: o.net,
        port: o.port,
        params,
        failout: o.failout,
        reformat: !!o.reformat,
        key: o.key,
        netns: o.netns,
        tls: !!o.tls,
      })
      for (const w of r.warnings) process.stderr.write(`lproxy: warning: ${w}\n`)
      const lines = r.formatted.length ? [`formatted ${r.formatted.join(', ')} in ${r.dir}/targets`] : []
      for (const p of r.placements) lines.push(`${p.target} (${r.cluster.targets[p.target]!.names.join(', ')}) serving on ${p.node} (${p.nid}, pid ${p.pid})`)
      lines.push(r.mounted ? `mounted ${r.cluster.fsname} on ${r.cluster.mount.mountpoint}` : 'not mounted (--no-mount)')
      lines.push(`cluster up in ${r.dir} (${((Date.now() - t0) / 1000).toFixed(1)} s)`)
      print(lines)
    })

  dirOption(command(cluster, 'status', 'nodes, which node serves each target now, recovery, clients, the mount'))
    .option('--json', 'print JSON')
    .action(async (o: { dir: string; json?: boolean }) => {
      const { clusterStatus } = await import('../cluster/status.js')
      const st = await clusterStatus(await openCluster(o.dir))
      print(o.json ? [JSON.stringify(st, null, 2)] : statusLines(st))
    })

  dirOption(command(cluster, 'down', 'unmount, stop every target cleanly, leave no process (keeps the data)'))
    .option('--purge', 'also remove the cluster directory')
    .action(async (o: { dir: string; purge?: boolean }) => {
      const { clusterDown } = await import('../cluster/down.js')
      const r = await clusterDown(await openCluster(o.dir), { purge: !!o.purge })
      for (const w of r.warnings) process.stderr.write(`lproxy: warning: ${w}\n`)
      const lines = [`stopped ${r.stopped.length} target${r.stopped.length === 1 ? '' : 's'} cleanly`]
      if (r.unmounted) lines.unshift('unmounted')
      if (r.killed.length) lines.push(`killed pid ${r.killed.join(', ')}`)
      if (r.netns?.length) lines.push(`deleted network namespaces ${r.netns.join(', ')}`)
      lines.push(r.purged ? `cluster down, ${o.dir} removed` : 'cluster down')
      print(lines)
    })

  dirOption(command(cluster, 'fail', 'fail a node (or the node serving a target): power-off, then takeover by its partner after the dead time'))
    .argument('<node|target>', `mds1, mds2, oss1, oss2, or a target (mdt0, ost1, ost2) meaning the node serving it now; ${CLIENT} for network faults`)
    .option('--soft', 'clean stop instead of power-off (no dead time)')
    .option('--hang', 'SIGSTOP the node; after the dead time it is fenced (SIGKILL) and taken over')
    .option('--partition', "(--netns) cut the node's link, its process lives on; after the dead time it is fenced and taken over")
    .option('--from <peer>', '(--netns) with --partition: cut the link to this node (or client) only; nothing is taken over')
    .option('--loss <pct>', "(--netns) lose this share of packets each way on the node's link; nothing is taken over")
    .option('--delay <ms>', "(--netns) delay the node's link (needs tc netem in the kernel)", intParser(1, 60_000))
    .option('--no-fence', 'take over without fencing (STONITH) the node first: MMP is the only guard')
    .option('--no-takeover', 'fail only: nobody takes the targets over')
    .option('--deadtime <s>', 'time to declare the node dead', secondsParser(true), 1)
    .option('--json', 'print JSON')
    .action(async (what: string, o: FailCli) => {
      if (isNetFaultOnly(what, o)) return netFault(what, o)
      if (o.soft && (o.hang || o.partition)) throw new UsageError('cluster fail: --soft excludes --hang and --partition')
      const mode: FailMode = o.soft ? 'soft' : o.hang ? 'hang' : o.partition ? 'live' : 'kill'
      const deadtimeMs = o.deadtime * 1000
      const show = (r: MoveResult) => print(o.json ? [JSON.stringify(r, null, 2)] : moveLines(r))
      const { clusterFail, TakeoverError } = await import('../cluster/fail.js')
      try {
        show(await clusterFail(await openCluster(o.dir), { what, mode, takeover: o.takeover, deadtimeMs, partition: !!o.partition, fence: o.fence }))
      } catch (e) {
        // What happened before the takeover failed (the fault is in place) is part of the answer.
        if (e instanceof TakeoverError) show(e.result)
        throw e
      }
    })
  registerHeal(cluster, dirOption)

  dirOption(command(cluster, 'failback', "move a node's own targets back to it from its partner (clean stop there, start here)"))
    .argument('<node>', 'mds1, mds2, oss1 or oss2')
    .option('--json', 'print JSON')
    .action(async (node: string, o: { dir: string; json?: boolean }) => {
      const { clusterFailback } = await import('../cluster/fail.js')
      const r = await clusterFailback(await openCluster(o.dir), node)
      print(o.json ? [JSON.stringify(r, null, 2)] : r.moved.length ? moveLines(r) : [`${node} already serves its targets`])
    })
}

interface FailCli extends NetFaultCli {
  soft?: boolean
  hang?: boolean
  partition?: boolean
  fence: boolean
  takeover: boolean
  deadtime: number
  json?: boolean
}

interface UpCli {
  dir: string
  /** A path with --mount, false with --no-mount. */
  mount?: string | false
  net?: string
  port?: number
  timeout?: number
  commitInterval?: number
  mmpInterval?: number
  recoverySoft?: number
  failout?: string[]
  param?: string[]
  reformat?: boolean
  /** False with --no-key. */
  key?: boolean
  netns?: boolean
  tls?: boolean
}

function moveLines(r: MoveResult): string[] {
  return r.timeline.map((e) => `${('+' + (e.ms / 1000).toFixed(3) + 's').padStart(9)}  ${e.event}`)
}

/** A netns cluster's link worth showing: cut, filtered or delayed. */
const ails = (link: string | undefined) => link !== undefined && link !== 'ok' && link !== 'none'

function statusLines(st: ClusterStatus): string[] {
  const nodes = st.nodes.map((n) => [n.name, n.nid, ails(n.link) ? `${n.state}, link ${n.link}` : n.state, n.pid === null ? '-' : String(n.pid), n.targets.join(', ') || '-'])
  const targets = st.targets.map((t) => [
    t.name,
    t.names.join(', '),
    t.state,
    t.node ?? '-',
    t.recovery ?? '-',
    `${t.primary}/${t.failover}`,
    t.clients.map((c) => c.uuid + (c.connected ? '' : ' (disconnected)')).join(', ') || '-',
  ])
  const m = st.mount
  return [
    `cluster ${st.fsname} in ${st.dir} (net ${st.net}, port ${st.port}${st.tls ? ', mutual TLS' : ''})`,
    '',
    ...table(['NODE', 'NID', 'STATE', 'PID', 'SERVES'], nodes),
    '',
    ...table(['TARGET', 'NAMES', 'STATE', 'ON', 'RECOVERY', 'PRIMARY/FAILOVER', 'CLIENTS'], targets),
    '',
    `mount: ${m.mountpoint} ${m.mounted ? 'mounted' : 'not mounted'}${m.pid !== null ? `, daemon pid ${m.pid}` : ''}${m.enabled ? '' : ' (--no-mount)'}${ails(m.link) ? `, client link ${m.link}` : ''}`,
  ]
}

function table(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  return [head, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '))
}

import path from 'node:path'
import { exists } from '../common/fsutil.js'
import { CONFIG_FILE } from '../server/target/config.js'
import { readMmp } from '../server/target/mmp.js'
import { adminCall, probeNode, targetNames, PROBE_MS, type Probe } from './admin.js'
import type { LocalCluster } from './local.js'
import { CLIENT } from './netns.js'
import { linkState, type LinkState } from './partition.js'
import { isMounted } from '../common/mounts.js'

/**
 * What runs in a local cluster now, from the processes themselves: each node's admin socket,
 * each target's MMP block (who holds it), /proc for PIDs and mounts.
 */
export interface NodeView {
  name: string
  nid: string
  /** up: answers; hung: accepts but does not answer (SIGSTOP); down: nobody listens. */
  state: Probe['state']
  pid: number | null
  targets: string[]
  /** The netns cluster only: what ails the node's network link. */
  link?: LinkState
}

export interface TargetView {
  name: string
  names: string[]
  dir: string
  primary: string
  failover: string
  /** serving; hung or down: its holder stopped answering or crashed without releasing it. */
  state: 'serving' | 'hung' | 'down' | 'stopped' | 'unformatted'
  node: string | null
  nid: string | null
  recovery: string | null
  clients: Array<{ uuid: string; connected: boolean }>
}

export interface MountView {
  mountpoint: string
  enabled: boolean
  pid: number | null
  mounted: boolean
  /** The netns cluster only: what ails the client's network link. */
  link?: LinkState
}

export interface ClusterStatus {
  dir: string
  fsname: string
  net: string
  port: number
  /** Made with `up --tls`. */
  tls: boolean
  nodes: NodeView[]
  targets: TargetView[]
  mount: MountView
}

export async function clusterStatus(lc: LocalCluster): Promise<ClusterStatus> {
  const { cf } = lc
  const probes = new Map(await Promise.all(lc.nodeNames.map(async (n) => [n, await probeNode(lc.nid(n), cf.port)] as const)))
  const nodes = await Promise.all(
    lc.nodeNames.map(async (name): Promise<NodeView> => {
      const p = probes.get(name)!
      const pids = await lc.nodePids(name, p.state === 'up' ? [p.status.pid] : [])
      const link = lc.cf.netns === undefined ? {} : { link: await linkState(lc, name) }
      return { name, nid: lc.nid(name), state: p.state, pid: pids[0] ?? null, targets: p.state === 'up' ? targetNames(p.status) : [], ...link }
    }),
  )
  const targets = await Promise.all(lc.targetKeys.map((key) => targetView(lc, key, probes)))
  const mp = cf.mount.mountpoint
  const link = cf.netns === undefined ? {} : { link: await linkState(lc, CLIENT) }
  const mount = { mountpoint: mp, enabled: cf.mount.enabled, pid: (await lc.mountPid()) ?? null, mounted: await isMounted(mp), ...link }
  return { dir: lc.dir, fsname: cf.fsname, net: cf.net, port: cf.port, tls: cf.tls === true, nodes, targets, mount }
}

async function targetView(lc: LocalCluster, key: string, probes: Map<string, Probe>): Promise<TargetView> {
  const t = lc.cf.targets[key]!
  const v: TargetView = { name: key, names: t.names, dir: t.dir, primary: t.primary, failover: t.failover, state: 'stopped', node: null, nid: null, recovery: null, clients: [] }
  if (!(await exists(path.join(t.dir, CONFIG_FILE)))) return { ...v, state: 'unformatted' }
  const mmp = await readMmp(t.dir)
  if (!mmp || mmp.state === 'clean') return v
  const node = lc.nodeByNid(mmp.nid)
  const probe = node ? probes.get(node)! : await probeNode(mmp.nid, lc.cf.port)
  v.node = node ?? mmp.node
  v.nid = mmp.nid
  if (probe.state === 'hung') return { ...v, state: 'hung' }
  const mount = probe.state === 'up' ? probe.status.mounts.find((m) => m.dir === t.dir) : undefined
  if (!mount) return { ...v, state: 'down' }
  const rs = await adminCall<{ status: string }>(mmp.nid, lc.cf.port, { cmd: 'recovery_status', dir: t.dir }, PROBE_MS).catch(() => null)
  // The MGS's clients are every node's and mount's management client: list the MDT's or OST's.
  const clients = new Map(mount.targets.filter((x) => x.kind !== 'mgs').flatMap((x) => x.clients).map((c) => [c.uuid, { uuid: c.uuid, connected: c.connected }]))
  return { ...v, state: 'serving', recovery: rs?.status ?? null, clients: [...clients.values()] }
}

/** What of the cluster still runs, one phrase each (empty when it is all down). */
export function running(st: ClusterStatus): string[] {
  const out = st.nodes
    .filter((n) => n.state !== 'down' || n.pid !== null)
    .map((n) => `${n.name} (${n.nid}${n.pid !== null ? `, pid ${n.pid}` : ''}${n.state === 'hung' ? ', hung' : ''})${n.targets.length ? ` serving ${n.targets.join(', ')}` : ''}`)
  if (st.mount.mounted || st.mount.pid !== null) out.push(`the mount on ${st.mount.mountpoint}${st.mount.pid !== null ? ` (pid ${st.mount.pid})` : ''}`)
  return out
}

import { adminCall, UMOUNT_MS } from './admin.js'
import type { LocalCluster, Placement } from './local.js'
import { cutLink } from './partition.js'
import { signal, sleep, waitGone } from './proc.js'
import { clusterStatus, type ClusterStatus } from './status.js'

/**
 * Fault injection and the HA layer's answer to it (what Heartbeat/Pacemaker do for Lustre):
 * a node dies, hangs or is stopped, and after the dead time its targets are started on
 * their failover partner. `failback` moves a node's own targets home again.
 *
 * The partner cannot tell a dead node from a hung or cut-off one, so a takeover fences
 * first (STONITH: SIGKILL is this cluster's power switch); MMP is the last guard.
 */
/** kill: power-off; soft: clean stop; hang: SIGSTOP; live: the process untouched (with `partition`). */
export type FailMode = 'kill' | 'soft' | 'hang' | 'live'

export interface FailOptions {
  /** A node (mds1, oss2) or a target (mdt0, ost1, spfs-OST0002) meaning the node serving it. */
  what: string
  mode: FailMode
  takeover: boolean
  deadtimeMs: number
  /** Cut the node's network link first (netns cluster): the process lives on, unreachable. */
  partition?: boolean
  /**
   * STONITH before takeover (default): a node that may still live (hung, partitioned) is
   * powered off before its partner starts its targets. Without it MMP is the only guard.
   */
  fence?: boolean
}

export interface Moved extends Placement {
  /** Milliseconds from the fault (or the start of failback) until it served again. */
  ms: number
}

export interface MoveResult {
  node: string
  nid: string
  pid: number | null
  /** Date.now() at the start, the zero of the timeline. */
  t0: number
  /** Events in order, in ms from the start: what a failover test wants to see timed. */
  timeline: Array<{ ms: number; event: string }>
  moved: Moved[]
}

/** A node exits once it serves nothing, and a killed one is gone at once; bounded anyway. */
const EXIT_WAIT_MS = 5000

/** A takeover that did not happen (MMP refused it, say), with what had happened until then. */
export class TakeoverError extends Error {
  constructor(
    cause: Error,
    readonly result: MoveResult,
  ) {
    super(cause.message, { cause })
  }
}

export async function clusterFail(lc: LocalCluster, o: FailOptions): Promise<MoveResult> {
  const st = await clusterStatus(lc)
  const node = victim(lc, st, o.what)
  const nv = st.nodes.find((n) => n.name === node)!
  if (nv.pid === null) throw new Error(`node ${node} (${nv.nid}) is not running`)
  if (o.mode === 'live' && !o.partition) throw new Error(`failing ${node} with its process untouched needs a partition`)
  if (o.mode === 'soft' && nv.state !== 'up') throw new Error(`node ${node} does not answer, so it cannot stop cleanly; 'lproxy cluster fail ${o.what}' powers it off`)
  const pid = nv.pid
  const served = st.targets.filter((t) => t.node === node && (t.state === 'serving' || t.state === 'hung'))
  const t0 = Date.now()
  const r: MoveResult = { node, nid: nv.nid, pid, t0, timeline: [], moved: [] }
  const event = (e: string) => r.timeline.push({ ms: Date.now() - t0, event: e })
  const fence = o.fence ?? true
  /** After the dead time, a node that may still run is fenced before anyone takes over. */
  const stonith = async (how: string) => {
    await sleep(o.deadtimeMs)
    if (!fence) return event(`${node} declared dead after the dead time, NOT fenced (${how}): MMP is the only guard`)
    event(`${node} declared dead after the dead time; fencing it (STONITH)`)
    await kill(pid)
    delete lc.cf.nodes[node]!.pid
    event(`${node} fenced (SIGKILL)`)
  }

  if (o.partition) event(await cutLink(lc, node))
  if (o.mode === 'live') {
    if (o.takeover) await stonith('it lives on behind the partition')
  } else if (o.mode === 'soft') {
    for (const t of served) {
      await adminCall(nv.nid, lc.cf.port, { cmd: 'umount', dir: t.dir, clean: true }, UMOUNT_MS)
      event(`${t.name} stopped cleanly on ${node}`)
    }
    await waitGone([pid], EXIT_WAIT_MS)
    delete lc.cf.nodes[node]!.pid
  } else if (o.mode === 'hang') {
    signal(pid, 'SIGSTOP')
    event(`${node} (pid ${pid}) hung (SIGSTOP)`)
    if (o.takeover) await stonith('it is only stopped')
  } else {
    await kill(pid)
    delete lc.cf.nodes[node]!.pid
    event(`${node} (pid ${pid}) powered off (SIGKILL)`)
    if (o.takeover) await sleep(o.deadtimeMs)
  }

  if (o.takeover && served.length) {
    const byPartner = new Map<string, string[]>()
    for (const t of served) {
      const p = lc.partner(t.name, node)
      byPartner.set(p, [...(byPartner.get(p) ?? []), t.name])
    }
    for (const [p, keys] of byPartner) event(`takeover of ${keys.join(', ')} by ${p} (${lc.nid(p)}) started`)
    const placed = await Promise.allSettled([...byPartner].map(([p, keys]) => lc.startOn(p, keys)))
    await lc.save()
    for (const x of placed) if (x.status === 'fulfilled') for (const m of x.value) record(r, m, t0)
    const refused = placed.flatMap((x) => (x.status === 'rejected' ? [x.reason as Error] : []))
    for (const e of refused) event(`takeover failed: ${e.message}`)
    if (refused.length) throw new TakeoverError(refused[0]!, r)
  }
  await lc.save()
  return r
}

/** Move `node`'s own targets back from wherever they are served: clean stop there, start on `node`. */
export async function clusterFailback(lc: LocalCluster, node: string): Promise<MoveResult> {
  if (!lc.cf.nodes[node]) throw new Error(`'${node}' is not a node of the cluster (${lc.nodeNames.join(', ')})`)
  const st = await clusterStatus(lc)
  const t0 = Date.now()
  const r: MoveResult = { node, nid: lc.nid(node), pid: null, t0, timeline: [], moved: [] }
  const away = st.targets.filter((t) => t.primary === node && !(t.state === 'serving' && t.node === node))
  for (const t of away) {
    if (t.state === 'unformatted') throw new Error(`${t.name} in ${t.dir} is not formatted; 'lproxy cluster up' formats it`)
    if (t.state === 'hung') throw new Error(`${t.name} is held by ${t.node}, which does not answer; 'lproxy cluster fail ${t.node}' first`)
    if (t.state !== 'serving') continue
    await adminCall(t.nid!, lc.cf.port, { cmd: 'umount', dir: t.dir, clean: true }, UMOUNT_MS)
    r.timeline.push({ ms: Date.now() - t0, event: `${t.name} stopped cleanly on ${t.node}` })
  }
  try {
    for (const m of await lc.startOn(node, away.map((t) => t.name))) record(r, m, t0)
  } finally {
    await lc.save()
  }
  r.pid = lc.cf.nodes[node]!.pid ?? null
  return r
}

function record(r: MoveResult, m: Placement, t0: number): void {
  r.moved.push({ ...m, ms: m.at - t0 })
  r.timeline.push({ ms: m.at - t0, event: `${m.target} serving on ${m.node} (${m.nid}, pid ${m.pid})` })
}

async function kill(pid: number): Promise<void> {
  signal(pid, 'SIGKILL')
  await waitGone([pid], EXIT_WAIT_MS)
}

function victim(lc: LocalCluster, st: ClusterStatus, what: string): string {
  if (lc.cf.nodes[what]) return what
  const key = lc.targetKey(what)
  if (!key) throw new Error(`'${what}' is neither a node (${lc.nodeNames.join(', ')}) nor a target (${lc.targetKeys.join(', ')}) of the cluster`)
  const t = st.targets.find((x) => x.name === key)!
  if (t.state !== 'serving' && t.state !== 'hung') throw new Error(`${key} is not served by any node now (${t.state})`)
  return t.node!
}

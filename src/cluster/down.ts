import { promises as fsp } from 'node:fs'
import { umountFs } from '../client/mount.js'
import { clientSocket, nodeSocket } from '../common/rundir.js'
import { adminCall, probeNode, UMOUNT_MS, type NodeStatus, type Probe } from './admin.js'
import type { LocalCluster } from './local.js'
import { isMounted } from '../common/mounts.js'
import { deleteNet } from './netns.js'
import { procState, signal, waitGone } from './proc.js'

/**
 * `cluster down`: the mount first (while its servers can still answer it), then a clean stop
 * of every target, then by PID whatever is left. Data stay unless purged.
 */
export interface DownResult {
  unmounted: boolean
  /** Target directories stopped cleanly. */
  stopped: string[]
  /** PIDs that had to be killed. */
  killed: number[]
  /** Problems met on the way (the cluster is down regardless). */
  warnings: string[]
  purged: boolean
  /** Network namespaces deleted (a netns cluster). */
  netns?: string[]
}

type MountStatus = NodeStatus['mounts'][number]

/** How long processes get to exit by themselves before they are killed. */
const GRACE_MS = 5000

export async function clusterDown(lc: LocalCluster, o: { purge: boolean }): Promise<DownResult> {
  const r: DownResult = { unmounted: false, stopped: [], killed: [], warnings: [], purged: false }
  await downMount(lc, r)
  const probes = await Promise.all(lc.nodeNames.map((n) => probeNode(lc.nid(n), lc.cf.port)))
  // Lustre's order: the MDT first, so that its OSP disconnects from OSTs that still answer
  // (an OST stopped first would keep the OSP in last_rcvd and wait for it at its next start).
  const hasMdt = (m: MountStatus) => m.targets.some((t) => t.kind === 'mdt')
  for (const wave of [hasMdt, (m: MountStatus) => !hasMdt(m)])
    await Promise.all(lc.nodeNames.map((n, i) => stopMounts(lc, n, probes[i]!, wave, r)))
  const seen = probes.map((p) => (p.state === 'up' ? [p.status.pid] : []))

  const pids = (await Promise.all(lc.nodeNames.map((n, i) => lc.nodePids(n, seen[i])))).flat()
  // A stopped (hung) node will not exit by itself: no grace for it.
  const hung: number[] = []
  for (const p of pids) if ((await procState(p)) === 'stopped') hung.push(p)
  const stubborn = await waitGone(pids.filter((p) => !hung.includes(p)), GRACE_MS)
  for (const p of [...hung, ...stubborn]) signal(p, 'SIGKILL')
  r.killed.push(...hung, ...stubborn)
  const left = await waitGone([...hung, ...stubborn], GRACE_MS)
  if (left.length) throw new Error(`processes ${left.join(', ')} of the cluster in ${lc.dir} survive SIGKILL`)

  for (const n of lc.nodeNames) {
    await fsp.rm(nodeSocket(lc.nid(n), lc.cf.port), { force: true })
    delete lc.cf.nodes[n]!.pid
  }
  await fsp.rm(clientSocket(lc.cf.mount.mountpoint), { force: true })
  delete lc.cf.mount.pid
  delete lc.cf.mount.pidStart
  await lc.save()
  if (lc.cf.netns !== undefined) r.netns = await deleteNet(lc.cf.netns)

  if (o.purge) {
    if (await isMounted(lc.cf.mount.mountpoint)) throw new Error(`not purging ${lc.dir}: ${lc.cf.mount.mountpoint} is still mounted`)
    await fsp.rm(lc.dir, { recursive: true, force: true })
    r.purged = true
  }
  return r
}

async function downMount(lc: LocalCluster, r: DownResult): Promise<void> {
  const mp = lc.cf.mount.mountpoint
  const daemon = await lc.mountPid()
  if (!daemon && !(await isMounted(mp))) return
  try {
    await umountFs(mp)
    r.unmounted = true
  } catch (e) {
    r.warnings.push(`umount ${mp}: ${(e as Error).message}`)
  }
  if (daemon && (await lc.mountPid())) {
    signal(daemon, 'SIGKILL')
    r.killed.push(daemon)
    await waitGone([daemon], GRACE_MS)
  }
  // With its daemon gone, umountFs lazily detaches the dead FUSE mount (fusermount -uz).
  if (await isMounted(mp)) {
    await umountFs(mp)
    r.unmounted = true
  }
}

/** Clean stop of the target directories `node` serves that `which` picks. */
async function stopMounts(lc: LocalCluster, node: string, p: Probe, which: (m: MountStatus) => boolean, r: DownResult): Promise<void> {
  if (p.state !== 'up') return
  for (const m of p.status.mounts.filter(which)) {
    try {
      await adminCall(lc.nid(node), lc.cf.port, { cmd: 'umount', dir: m.dir, clean: true }, UMOUNT_MS)
      r.stopped.push(m.dir)
    } catch (e) {
      r.warnings.push(`clean stop of ${m.dir} on ${node}: ${(e as Error).message}`)
    }
  }
}

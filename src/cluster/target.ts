import path from 'node:path'
import type { TlsFiles } from '../common/tls.js'
import { LpError } from '../protocol/errno.js'
import { formatNid, parseNid } from '../protocol/nid.js'
import { readConfig, describe, type TargetConfig } from '../server/target/config.js'
import { readMmp } from '../server/target/mmp.js'
import { adminCall, probeNode, MOUNT_MS, UMOUNT_MS, type NodeStatus } from './admin.js'
import { spawnNode } from './spawn.js'
import { waitGone } from './proc.js'
import { refuseIfPoweredOff } from '../ha/marker.js'
import { defaultLog } from './layout.js'

/**
 * One target directory on one node: `lproxy start` / `stop`, and the building block of the
 * local cluster's failover moves.
 */
export interface Served {
  dir: string
  cfg: TargetConfig
  /** e.g. `MGS+spfs-MDT0000`. */
  name: string
  nid: string
  status: NodeStatus
}

/** The node serving `dir` now: the MMP block names the holder, and the holder must confirm. */
export async function servingNode(dirArg: string): Promise<Served> {
  const dir = path.resolve(dirArg)
  const cfg = await readConfig(dir)
  const name = describe(cfg)
  const mmp = await readMmp(dir)
  const what = `${name} in ${dir}`
  if (!mmp) throw new LpError('ENODEV', `${what} is not served: it was never started`)
  const holder = `node ${mmp.node} (${mmp.nid}, pid ${mmp.pid})`
  const when = new Date(mmp.time).toISOString()
  if (mmp.state === 'clean') throw new LpError('ENODEV', `${what} is not served: ${holder} stopped it cleanly at ${when}`)
  const probe = await probeNode(mmp.nid, cfg.port)
  if (probe.state === 'hung') throw new LpError('ETIMEDOUT', `${what}: ${holder} holds it but does not answer its admin socket`)
  if (probe.state === 'down' || !probe.status.mounts.some((m) => m.dir === dir))
    throw new LpError('ENODEV', `${what} is not served: ${holder} held it last, at ${when}, and no longer serves it (crashed?)`)
  return { dir, cfg, name, nid: mmp.nid, status: probe.status }
}

export interface StartOptions {
  dir: string
  nid: string
  /** Node name and log, used only when a new node process has to be started. */
  name?: string
  log?: string
  params: Record<string, string>
  /** Start past journal damage from the last good record, logging what is dropped. */
  discardCorruptJournal?: boolean
  /** Network namespace a new node process runs in (the netns cluster). */
  netns?: string
  /** ADDR:PORT for a new node's /metrics. */
  metrics?: string
  /** Mutual TLS for a node started for it; a running node must be as secure as asked. */
  tls?: TlsFiles
}

export interface Started {
  dir: string
  nid: string
  node: string
  pid: number
  targets: string[]
  /** Whether a new node process was started for it (else an already running node mounted it). */
  spawned: boolean
  /** It was served there already: nothing was done. */
  already?: boolean
}

/**
 * Mount `dir` on the node bound to `nid`, starting that node if none runs; resolves once it
 * serves. Already served there is success (an HA manager repeats starts).
 */
export async function startTarget(o: StartOptions): Promise<Started> {
  const nid = formatNid(parseNid(o.nid))
  const dir = path.resolve(o.dir)
  const cfg = await readConfig(dir)
  await refuseIfPoweredOff(nid)
  const probe = await probeNode(nid, cfg.port)
  if (probe.state === 'hung') throw new LpError('ETIMEDOUT', `the node on ${nid} (port ${cfg.port}) does not answer its admin socket (stopped?)`)
  if (probe.state === 'up') {
    const here = probe.status.mounts.find((m) => m.dir === dir)
    if (here) return { dir, nid, node: probe.status.node, pid: probe.status.pid, targets: here.targets.map((t) => t.name), spawned: false, already: true }
    if (o.metrics) throw new LpError('EALREADY', `the node on ${nid} already runs: its /metrics address was chosen when it started`)
    if (probe.status.tls !== (o.tls !== undefined))
      throw new LpError('EINVAL', `the node on ${nid} runs ${probe.status.tls ? 'with' : 'without'} TLS; stop it first to start ${dir} ${o.tls ? 'with' : 'without'} TLS`)
    const r = await adminCall<{ targets: string[] }>(nid, cfg.port, { cmd: 'mount', dir, params: o.params, discard_corrupt_journal: o.discardCorruptJournal }, MOUNT_MS)
    return { dir, nid, node: probe.status.node, pid: probe.status.pid, targets: r.targets, spawned: false }
  }
  const name = o.name ?? parseNid(nid).host
  const s = await spawnNode({ nid, name, port: cfg.port, dir, log: o.log ?? defaultLog(name), params: o.params, discardCorruptJournal: o.discardCorruptJournal, netns: o.netns, metrics: o.metrics, tls: o.tls })
  return { dir, nid, node: name, pid: s.pid, targets: s.targets, spawned: true }
}

/** A node exits once it serves nothing; waiting for that lets a following start on its NID begin afresh. */
const EXIT_WAIT_MS = 5000

export type Where = { served: Served } | { served: null; why: string }

/**
 * The node serving `dir`, if it is the one on `onNid` (any, without it); else why not.
 * Errors other than "not served" (not a target, a holder that does not answer) are thrown.
 */
export async function servingOn(dirArg: string, onNid?: string): Promise<Where> {
  let s: Served
  try {
    s = await servingNode(dirArg)
  } catch (e) {
    if (e instanceof LpError && e.code === 'ENODEV') return { served: null, why: e.message }
    throw e
  }
  const here = onNid === undefined ? s.nid : formatNid(parseNid(onNid))
  return s.nid === here ? { served: s } : { served: null, why: `${s.name}: served on ${s.nid}, not on ${here}` }
}

/**
 * Clean unmount of `dir` on whichever node serves it (soft failover), or only if `onNid`
 * serves it. Not served (there) is success, saying why: an HA manager repeats stops.
 */
export async function stopTarget(dirArg: string, onNid?: string): Promise<Where> {
  const w = await servingOn(dirArg, onNid)
  if (!w.served) return w
  const s = w.served
  await adminCall(s.nid, s.cfg.port, { cmd: 'umount', dir: s.dir, clean: true }, UMOUNT_MS)
  if (s.status.mounts.length === 1) await waitGone([s.status.pid], EXIT_WAIT_MS)
  return w
}

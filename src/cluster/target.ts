import path from 'node:path'
import type { TlsFiles } from '../common/tls.js'
import { LpError } from '../protocol/errno.js'
import { formatNid, parseNid } from '../protocol/nid.js'
import { readConfig, describe, type TargetConfig } from '../server/target/config.js'
import { readMmp } from '../server/target/mmp.js'
import { adminCall, probeNode, MOUNT_MS, UMOUNT_MS, type NodeStatus } from './admin.js'
import { spawnNode } from './spawn.js'
import { waitGone } from './proc.js'

/**
 * One target directory on one node: `lproxy start` / `stop`, and the building block of the
 * local cluster's failover moves.
 */
export const DEFAULT_LOG_DIR = '/var/log/lproxy'

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
}

export function defaultLog(name: string): string {
  return path.join(DEFAULT_LOG_DIR, `${name}.log`)
}

/** Mount `dir` on the node bound to `nid`, starting that node if none runs; resolves once it serves. */
export async function startTarget(o: StartOptions): Promise<Started> {
  const nid = formatNid(parseNid(o.nid))
  const dir = path.resolve(o.dir)
  const cfg = await readConfig(dir)
  const probe = await probeNode(nid, cfg.port)
  if (probe.state === 'hung') throw new LpError('ETIMEDOUT', `the node on ${nid} (port ${cfg.port}) does not answer its admin socket (stopped?)`)
  if (probe.state === 'up') {
    if (probe.status.tls !== (o.tls !== undefined))
      throw new LpError('EINVAL', `the node on ${nid} runs ${probe.status.tls ? 'with' : 'without'} TLS; stop it first to start ${dir} ${o.tls ? 'with' : 'without'} TLS`)
    const r = await adminCall<{ targets: string[] }>(nid, cfg.port, { cmd: 'mount', dir, params: o.params, discard_corrupt_journal: o.discardCorruptJournal }, MOUNT_MS)
    return { dir, nid, node: probe.status.node, pid: probe.status.pid, targets: r.targets, spawned: false }
  }
  const name = o.name ?? parseNid(nid).host
  const s = await spawnNode({ nid, name, port: cfg.port, dir, log: o.log ?? defaultLog(name), params: o.params, discardCorruptJournal: o.discardCorruptJournal, tls: o.tls })
  return { dir, nid, node: name, pid: s.pid, targets: s.targets, spawned: true }
}

/** A node exits once it serves nothing; waiting for that lets a following start on its NID begin afresh. */
const EXIT_WAIT_MS = 5000

/** Clean unmount of `dir` on whichever node serves it (soft failover). */
export async function stopTarget(dirArg: string): Promise<Served> {
  const s = await servingNode(dirArg)
  await adminCall(s.nid, s.cfg.port, { cmd: 'umount', dir: s.dir, clean: true }, UMOUNT_MS)
  if (s.status.mounts.length === 1) await waitGone([s.status.pid], EXIT_WAIT_MS)
  return s
}

import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { LpError } from '../protocol/errno.js'
import { formatNid, nidToken, parseNid } from '../protocol/nid.js'
import { writeFileAtomic } from '../common/fsutil.js'

/**
 * The "power switch" of an embedded-cluster node: fence_lproxy's `off` leaves a marker per
 * NID, and a node refuses to start on a NID that is powered off until `on` removes it. The
 * directory is shared by every node of a machine (not under the per-node run dir).
 */
export function fenceDir(): string {
  return process.env.LPROXY_FENCE_DIR ?? '/var/lib/lproxy/fence'
}

function markerFile(dir: string, nid: string): string {
  return path.join(dir, `${nidToken(formatNid(parseNid(nid)))}.off`)
}

export async function isPoweredOff(nid: string, dir = fenceDir()): Promise<boolean> {
  return fsp.access(markerFile(dir, nid)).then(
    () => true,
    () => false,
  )
}

export async function powerOff(nid: string, reason: string, dir = fenceDir()): Promise<void> {
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 })
  await writeFileAtomic(markerFile(dir, nid), `${new Date().toISOString()} ${reason}\n`)
}

export async function powerOn(nid: string, dir = fenceDir()): Promise<void> {
  await fsp.rm(markerFile(dir, nid), { force: true })
}

/** The guard a node start passes first. */
export async function refuseIfPoweredOff(nid: string): Promise<void> {
  if (await isPoweredOff(nid))
    throw new LpError('EHOSTDOWN', `node ${nid} is powered off by its fence agent (marker in ${fenceDir()}); 'fence_lproxy -o on -n ${nid}' powers it on`)
}

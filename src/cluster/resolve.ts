import { type MgsAccess, withMgs } from '../mgc/oneshot.js'
import { LpError } from '../protocol/errno.js'
import { DEFAULT_PORT, nidList } from '../protocol/nid.js'
import { parseTargetName, targetName } from '../protocol/names.js'
import { adminCall, probeNode, targetNames, UMOUNT_MS } from './admin.js'
import { servingNode } from './target.js'

/**
 * The admin verbs that name a target (barrier, recovery-status, abort-recovery, evict) take
 * its directory or its name; a name is looked up in the MGS's configuration to learn which
 * NIDs may serve it, and the node that does is asked through its local admin socket.
 */
export interface TargetRef {
  nid: string
  port: number
  select: { dir: string } | { target: string }
}

const MGS_ANSWER_MS = 10_000

export async function refByDir(dir: string): Promise<TargetRef> {
  const s = await servingNode(dir)
  return { nid: s.nid, port: s.cfg.port, select: { dir: s.dir } }
}

/** `access`: on a filesystem with a shared key, the MGS answers only a signed request (any of its keys). */
export async function refByName(name: string, mgsnode: string, port = DEFAULT_PORT, access: MgsAccess = {}): Promise<TargetRef> {
  const id = parseTargetName(name)
  if (!id) throw new LpError('EINVAL', `'${name}' is neither a target directory nor a target name (e.g. ost1, spfs-OST0001, mdt0, MGS)`)
  const mgsNids = nidList(mgsnode)
  let full: string
  let candidates: string[]
  if (id.kind === 'mgs') {
    full = 'MGS'
    candidates = mgsNids
  } else {
    const cfg = await withMgs(mgsNids, port, (mgc) => mgc.config(), MGS_ANSWER_MS, access)
    full = targetName(cfg.fsname, id)
    const t = cfg.targets.find((x) => x.name === full)
    if (!t) throw new LpError('ENODEV', `no target ${full} is registered with the MGS at ${mgsnode} (registered: ${cfg.targets.map((x) => x.name).join(', ') || 'none'})`)
    candidates = [...new Set([...(t.current_nid ? [t.current_nid] : []), ...t.nids])]
  }
  for (const nid of candidates) {
    const p = await probeNode(nid, port)
    if (p.state === 'up' && targetNames(p.status).includes(full)) return { nid, port, select: { target: full } }
  }
  throw new LpError('ENODEV', `${full} is not served by any node reachable through a local admin socket (tried ${candidates.join(', ')}, port ${port})`)
}

export function targetRequest<T>(ref: TargetRef, cmd: string, extra: Record<string, unknown> = {}): Promise<T> {
  return adminCall<T>(ref.nid, ref.port, { cmd, ...ref.select, ...extra }, UMOUNT_MS)
}

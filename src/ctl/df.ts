import type { ClientFs } from '../client/fs.js'
import { LpError } from '../protocol/errno.js'
import { parseTargetName, targetUuid } from '../protocol/names.js'
import type { StatfsReply } from '../protocol/ops.js'

/**
 * What `lfs df` needs from each target: its statfs, or why there is none. statfs is a
 * "no delay" request, so a target that is down answers EAGAIN at once instead of hanging df;
 * a deactivated OST is not asked at all.
 */
export interface DfTarget {
  uuid: string
  type: 'MDT' | 'OST'
  index: number
  state: 'active' | 'inactive' | 'unavailable'
  error?: string
  errno?: string
  statfs?: StatfsReply & { objects?: number }
}

async function ask(base: Omit<DfTarget, 'state'>, statfs: () => Promise<DfTarget['statfs']>): Promise<DfTarget> {
  try {
    return { ...base, state: 'active', statfs: await statfs() }
  } catch (e) {
    return { ...base, state: 'unavailable', error: (e as Error).message, errno: e instanceof LpError ? e.code : 'EIO' }
  }
}

export async function dfTargets(fs: ClientFs): Promise<DfTarget[]> {
  const mdt = fs.mdc.imp.target
  const rows = [ask({ uuid: targetUuid(mdt), type: 'MDT', index: parseTargetName(mdt)?.index ?? 0 }, () => fs.mdc.statfs())]
  for (const osc of [...fs.lov.oscs.values()].sort((a, b) => a.index - b.index)) {
    const base = { uuid: targetUuid(osc.imp.target), type: 'OST' as const, index: osc.index }
    rows.push(osc.imp.deactive ? Promise.resolve({ ...base, state: 'inactive' }) : ask(base, () => osc.statfs()))
  }
  return Promise.all(rows)
}

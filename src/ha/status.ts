import { servingOn } from '../cluster/target.js'

/**
 * `lproxy target-status`: what an OCF monitor asks. The exit codes are OCF's, so the agent
 * passes them through: running here, not running here, or cannot tell.
 */
export const OCF_SUCCESS = 0
export const OCF_ERR_GENERIC = 1
export const OCF_NOT_RUNNING = 7

export interface TargetStatus {
  code: typeof OCF_SUCCESS | typeof OCF_NOT_RUNNING
  line: string
}

/**
 * Served by a node this machine can see (its admin socket is in this run dir) and, with
 * `nid`, by the node on that NID. Errors (not a target, a holder that does not answer)
 * are thrown: the caller's exit 1.
 */
export async function targetStatus(dir: string, nid?: string): Promise<TargetStatus> {
  const w = await servingOn(dir, nid)
  if (!w.served) return { code: OCF_NOT_RUNNING, line: w.why }
  const s = w.served
  return { code: OCF_SUCCESS, line: `${s.name}: serving on ${s.nid} (node ${s.status.node}, pid ${s.status.pid})` }
}

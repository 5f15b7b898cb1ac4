import type { Cred } from '../../protocol/ops.js'
import { nidPatternList, parseNid } from '../../protocol/nid.js'

/**
 * Root squash, as Lustre's nodemap: a request from uid 0 (or with no identity, which is
 * root's) acts as the squash uid and gid, without supplementary groups, unless it comes from
 * a NID of `nosquash_nids` (matched on the socket's peer, never on what the request says).
 * Configured on the MDT target: `--param root_squash=65534:65534` and
 * `--param nosquash_nids=10.0.0.1@tcp,*@tcp1` at format (or at start), checked by the
 * parameter registry (common/registry.ts).
 */
export interface SquashConfig {
  uid: number
  gid: number
  /** Exact NIDs, or `*@net` for every host of a network. */
  nosquash: string[]
}

/** The squash configuration of a target's params (both already checked), or none. */
export function squashOf(params: Record<string, string>): SquashConfig | undefined {
  const rs = params['root_squash']
  if (!rs) return undefined
  const [uid, gid] = rs.split(':').map(Number) as [number, number]
  return { uid, gid, nosquash: nidPatternList(params['nosquash_nids'] ?? '') }
}

/** `net` of tcp is tcp0 in LNet. */
const netOf = (net: string) => (net === 'tcp' ? 'tcp0' : net)

function exempt(c: SquashConfig, peer: string | undefined): boolean {
  if (!peer) return false
  const p = parseNid(peer)
  return c.nosquash.some((n) => {
    const x = parseNid(n.startsWith('*@') ? `h${n.slice(1)}` : n)
    return netOf(x.net) === netOf(p.net) && (n.startsWith('*@') || x.host === p.host)
  })
}

/** The identity a request acts with; `squashed` when root became the squash ids. */
export function effectiveCred(c: SquashConfig | undefined, cred: Cred | undefined, peer: string | undefined): { cred: Cred | undefined; squashed: boolean } {
  if (!c || (cred && cred.uid !== 0) || exempt(c, peer)) return { cred, squashed: false }
  return { cred: { uid: c.uid, gid: c.gid, groups: [] }, squashed: true }
}

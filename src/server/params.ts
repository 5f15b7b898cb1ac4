import type { Param } from '../common/params.js'
import { importParams } from '../ptlrpc/views.js'
import type { Osp } from './osp.js'
import type { Target } from './target/target.js'

/**
 * A server node's parameters as `lctl get_param` names them on a Lustre server, one set per
 * target it serves: obdfilter.<ost>.stats, mdt.<mdt>.md_stats, and for each target its
 * recovery_status, exports and instance; and an MDT's OSP devices, its imports of the OSTs
 * (osp.<fsname>-OSTxxxx-osc-MDT0000.import, state, timeouts, active), which say why an MDT
 * cannot reach an OST. Read-only: servers are tuned through their configuration, not here.
 */
const TYPE = { mgs: 'mgs', mdt: 'mdt', ost: 'obdfilter' } as const

export function serverParamTable(targets: Iterable<Target>, osps: Iterable<Osp>, wallNow: () => number): Param[] {
  const out: Param[] = []
  for (const t of targets) {
    const at = (leaf: string) => [TYPE[t.kind], t.name, leaf]
    const stats = () => ({ snapshot_time: Math.round(wallNow()) / 1000, ...t.stats.set.view() })
    out.push(
      { path: at(t.kind === 'mdt' ? 'md_stats' : 'stats'), get: stats },
      { path: at('recovery_status'), get: () => t.recoveryStatus() },
      { path: at('exports'), get: () => t.clients() },
      { path: at('instance'), get: () => t.instance },
    )
  }
  for (const osp of osps) {
    const { tunables, clock } = osp.ptlrpc
    for (const imp of osp.devices) {
      const at = (leaf: string) => ['osp', imp.name, leaf]
      // The OSP always follows the MGS's imperative recovery.
      out.push(...importParams(imp, tunables, clock, ['multi_mod_rpcs', 'imp_recov'], at), { path: at('active'), get: () => (imp.deactive ? 0 : 1) })
    }
  }
  return out
}

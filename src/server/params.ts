import type { Param } from '../common/params.js'
import type { Target } from './target/target.js'

/**
 * A server node's parameters as `lctl get_param` names them on a Lustre server, one set per
 * target it serves: obdfilter.<ost>.stats, mdt.<mdt>.md_stats, and for each target its
 * recovery_status, exports and instance. Read-only: servers are tuned through their
 * configuration, not here.
 */
const TYPE = { mgs: 'mgs', mdt: 'mdt', ost: 'obdfilter' } as const

export function serverParamTable(targets: Iterable<Target>, wallNow: () => number): Param[] {
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
  return out
}

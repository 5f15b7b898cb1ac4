import type { Logger } from '../common/log.js'
import type { FsConfig, TargetInfo } from '../protocol/ops.js'
import type { Import } from '../ptlrpc/import.js'
import type { Mgc } from './mgc.js'

/**
 * Following the MGS for a set of imports, as Lustre's MGC does for a client or an MDT's OSP:
 * imperative recovery (a target restarted on some NID: reconnect there at once instead of
 * waiting for timeouts), the configuration's permanent `active` flags (conf_param
 * <target>.osc.active) and each target's NIDs (tunefs), applied as they change on the MGS.
 */
export interface FollowOptions {
  /** Imperative recovery (off with `-o noir`). */
  ir: boolean
  log: Logger
  /** This side's import of a target, if it has one. */
  importOf(target: string): Import | undefined
}

export function followMgs(mgc: Mgc, cfg: FsConfig, o: FollowOptions): void {
  // Only changes are applied: a local `deactivate` stays until the MGS's flag itself changes.
  const known = new Map(cfg.targets.map((t) => [t.name, t.active]))
  const nidsOf = new Map(cfg.targets.map((t) => [t.name, t.nids.join(' ')]))
  let reading = false
  let again = false
  const refresh = async () => {
    if (reading) return void (again = true)
    reading = true
    try {
      do {
        again = false
        for (const t of (await mgc.config()).targets) {
          if (nidsOf.get(t.name) !== t.nids.join(' ')) {
            nidsOf.set(t.name, t.nids.join(' '))
            o.importOf(t.name)?.setConnections(t.nids)
          }
          if (known.get(t.name) === t.active) continue
          known.set(t.name, t.active)
          applyActive(o.importOf(t.name), t, o.log)
        }
      } while (again)
    } catch (e) {
      o.log.debug({ err: (e as Error).message }, 'configuration re-read from the MGS failed')
    } finally {
      reading = false
    }
  }
  mgc.watch(cfg.seq, (events) => {
    // A target announced its (re)start: an import not connected to that instance goes there now.
    if (o.ir) for (const e of events) o.importOf(e.target)?.recoverTo(e.nid, e.instance)
    void refresh()
  })
  // Changes made while the MGS was out of reach came with no event we could see.
  mgc.import.on('state', (s: string) => {
    if (s === 'FULL') void refresh()
  })
}

function applyActive(imp: Import | undefined, t: TargetInfo, log: Logger): void {
  if (!imp || imp.deactive === !t.active) return
  log.warn({ target: t.name }, `${t.name}: ${t.active ? 'activated' : 'deactivated'} by the MGS configuration (conf_param ${t.name}.osc.active=${t.active ? 1 : 0})`)
  if (t.active) imp.activate()
  else imp.deactivate()
}

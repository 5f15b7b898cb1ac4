import { defaultOf, param } from '../common/registry.js'
import type { TargetConfig } from './target/config.js'
import type { TargetTunables } from './target/target.js'

/** Server timing from a target's params (seconds there; milliseconds here). */
export interface ServerTunables extends TargetTunables {
  mmpIntervalMs: number
}

/** Params are checked by the registry when they are written (format, tunefs, start); absent ones take its defaults. */
export function serverTunables(cfg: TargetConfig, overrides: Record<string, string> = {}): ServerTunables {
  const p = { ...cfg.params, ...overrides }
  const timeout = p['sys.timeout'] !== undefined ? Number(p['sys.timeout']) : defaultOf(param('timeout'))
  const num = (k: string) => (p[k] !== undefined ? Number(p[k]) : defaultOf(param(k), timeout))
  return {
    obdTimeoutMs: timeout * 1000,
    commitIntervalMs: num('commit_interval') * 1000,
    mmpIntervalMs: num('mmp_interval') * 1000,
    recoverySoftMs: num('recovery_time_soft') * 1000,
    recoveryHardMs: num('recovery_time_hard') * 1000,
    maxPendingBytes: 64 * 1024 * 1024,
    checkpointBytes: Math.ceil(num('journal_checkpoint_mb') * 1024 * 1024),
    imperativeRecovery: true,
  }
}

import type { TargetConfig } from './target/config.js'
import type { TargetTunables } from './target/target.js'

/** Server timing from a target's params (seconds there; milliseconds here). */
export interface ServerTunables extends TargetTunables {
  mmpIntervalMs: number
}

export function serverTunables(cfg: TargetConfig, overrides: Record<string, string> = {}): ServerTunables {
  const p = { ...cfg.params, ...overrides }
  const num = (k: string, dflt: number) => (p[k] !== undefined ? Number(p[k]) : dflt)
  const timeout = num('sys.timeout', 100)
  // 3 x obd_timeout, halved by imperative recovery (its 120 s floor, scaled as 1.2 x obd_timeout, is lower).
  const softMs = num('recovery_time_soft', 1.5 * timeout) * 1000
  return {
    obdTimeoutMs: timeout * 1000,
    commitIntervalMs: num('commit_interval', 5) * 1000,
    mmpIntervalMs: num('mmp_interval', 1) * 1000,
    recoverySoftMs: softMs,
    recoveryHardMs: num('recovery_time_hard', 9 * timeout) * 1000,
    maxPendingBytes: 64 * 1024 * 1024,
    checkpointBytes: Math.ceil(num('journal_checkpoint_mb', 256) * 1024 * 1024),
    imperativeRecovery: true,
  }
}

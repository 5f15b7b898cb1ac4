import { defaultOf, param } from '../common/registry.js'

/**
 * Client-side timing, derived from obd_timeout as Lustre derives it; tests scale obd_timeout
 * down instead of waiting through the real values. Times are in milliseconds.
 */
export class Tunables {
  /** obd_timeout (lctl `timeout`), seconds. */
  timeout = defaultOf(param('timeout'))

  get obdTimeoutMs(): number {
    return this.timeout * 1000
  }

  /** A request's deadline before its peer's liveness is checked with a ping. */
  get requestTimeoutMs(): number {
    return this.obdTimeoutMs
  }

  /** A liveness ping's own deadline. */
  get pingTimeoutMs(): number {
    return Math.max(1000, this.obdTimeoutMs / 20)
  }

  /** INITIAL_CONNECT_TIMEOUT = max(5 s, obd_timeout/20), plus 5 s per full cycle, at most 50 s more. */
  connectTimeoutMs(cycles: number): number {
    return Math.max(5000, this.obdTimeoutMs / 20) + Math.min(50_000, 5000 * cycles)
  }

  /** Pause between full cycles through the connection list while DISCONN. */
  get reconnectIntervalMs(): number {
    return Math.min(5000, this.obdTimeoutMs / 4)
  }

  /** Idle FULL imports ping every obd_timeout/4. */
  get pingIntervalMs(): number {
    return this.obdTimeoutMs / 4
  }

  /** Sooner while requests are kept for replay, to learn a newer last_committed. */
  get pingIntervalUncommittedMs(): number {
    return Math.min(7000, this.pingIntervalMs)
  }
}

import type { Clock } from '../common/clock.js'
import type { Param } from '../common/params.js'
import { targetUuid } from '../protocol/names.js'
import type { Import } from './import.js'
import type { Tunables } from './tunables.js'

/**
 * What `get_param <type>.<dev>.import|state|timeouts` shows of one import, shaped as Lustre's
 * lprocfs files are (ptlrpc's import, state and timeouts); the CLI prints them as YAML.
 */
const sec = (ms: number) => Math.round(ms) / 1000

/** Wall-clock seconds, to the millisecond (failovers here take well under one). */
const wallSec = (clock: Clock, monotonicMs: number) => sec(clock.wallNow() - (clock.now() - monotonicMs))

/** An import's own parameters, `<type>.<dev>.import`, `.state` and `.timeouts`, on a client (osc, mdc, mgc) and an MDS (osp) alike. */
export function importParams(imp: Import, t: Tunables, clock: Clock, connectFlags: string[], at: (leaf: string) => string[]): Param[] {
  return [
    { path: at('import'), get: () => importView(imp, t, connectFlags) },
    { path: at('state'), get: () => stateView(imp) },
    { path: at('timeouts'), get: () => timeoutsView(imp, t, clock) },
  ]
}

function importView(imp: Import, t: Tunables, connectFlags: string[]): { import: Record<string, unknown> } {
  const flags = [imp.invalid && 'invalid', imp.deactive && 'deactivate', imp.replayable && 'replayable', 'pingable'].filter(Boolean)
  const data = (s: { rpcs: number; bytes: number; ms: number }) => ({
    bytes_per_rpc: s.rpcs ? Math.round(s.bytes / s.rpcs) : 0,
    usec_per_rpc: s.rpcs ? Math.round((s.ms * 1000) / s.rpcs) : 0,
    MB_per_sec: s.ms ? Math.round((s.bytes / 1e6 / (s.ms / 1000)) * 100) / 100 : 0,
  })
  return {
    import: {
      name: imp.name,
      target: targetUuid(imp.target),
      state: imp.state,
      instance: imp.instance,
      connect_flags: connectFlags,
      import_flags: flags,
      connection: {
        failover_nids: imp.conns.map((c) => c.nid),
        current_connection: imp.currentNid ?? '<none>',
        connection_attempts: imp.connectionAttempts,
        generation: imp.generation,
        // Invalidation runs to completion at once here: none is ever in progress.
        'in-progress_invalidations': 0,
      },
      rpcs: {
        inflight: imp.inflight,
        delayed: imp.delayedCount,
        unregistering: 0,
        timeouts: imp.timeouts,
        avg_waittime: `${Math.round(imp.stats.avgWaitMs * 1000)} usec`,
      },
      // No adaptive timeouts: the estimates are the fixed deadlines derived from obd_timeout.
      service_estimates: { services: `${sec(t.requestTimeoutMs)} sec`, network: `${sec(t.pingTimeoutMs)} sec` },
      transactions: {
        last_replay: imp.lastReplayTransno,
        peer_committed: imp.peerCommitted,
        last_checked: imp.peerCommitted,
        kept_requests: imp.replayList.length,
        kept_bytes: imp.keptBytes,
      },
      // Not in Lustre's file: the counters of this import's failovers since the mount.
      recovery: {
        transitions: imp.stats.transitions,
        resends: imp.stats.resends,
        replayed_requests: imp.stats.replayedRequests,
        replayed_bytes: imp.stats.replayedBytes,
        stall_time: `${sec(imp.stats.stallMs)} sec`,
      },
      read_data_averages: data(imp.stats.bulk.read),
      write_data_averages: data(imp.stats.bulk.write),
    },
  }
}

function stateView(imp: Import): { current_state: string; state_history: Array<[number, string]> } {
  return { current_state: imp.state, state_history: imp.history.map((h) => [sec(h.time), h.state]) }
}

function timeoutsView(imp: Import, t: Tunables, clock: Clock): Record<string, unknown> {
  return {
    last_activity: imp.lastActive ? wallSec(clock, imp.lastActive) : 0,
    timeouts: imp.timeouts,
    request_deadline: `${sec(t.requestTimeoutMs)} sec`,
    ping_deadline: `${sec(t.pingTimeoutMs)} sec`,
    connect_deadline: `${sec(t.connectTimeoutMs(0))} sec`,
    reconnect_interval: `${sec(t.reconnectIntervalMs)} sec`,
    ping_interval: `${sec(t.pingIntervalMs)} sec`,
  }
}

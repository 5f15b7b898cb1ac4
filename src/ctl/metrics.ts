import { Registry } from 'prom-client'
import type { ClientFs } from '../client/fs.js'
import { counterOf, gaugeOf, latencyHistogram, type Sample } from '../common/metrics.js'
import type { ImportState } from '../ptlrpc/import.js'
import { importDevices } from './devices.js'

/**
 * A mount's /metrics (`-o metrics=ADDR:PORT`): each import's state and failover counters, RPC
 * latency by op, the OSCs' dirty and unstable bytes, and llite's operations. Values are read
 * from the layers' counters at each scrape; latencies are observed as RPCs complete.
 */
const STATES: ImportState[] = ['NEW', 'DISCONN', 'CONNECTING', 'REPLAY', 'REPLAY_LOCKS', 'REPLAY_WAIT', 'RECOVER', 'FULL', 'EVICTED', 'IDLE', 'CLOSED']

type Imp = 'target' | 'type'

export function clientRegistry(fs: ClientFs): Registry {
  const reg = new Registry()
  reg.setDefaultLabels({ fsname: fs.config.fsname, client: fs.client.uuid })
  const devs = importDevices(fs)
  const per = (value: (d: (typeof devs)[number]) => number) => (): Iterable<Sample<Imp>> => devs.map((d) => [{ target: d.imp.target, type: d.type }, value(d)])
  const counter = (name: string, help: string, value: (d: (typeof devs)[number]) => number) => counterOf(reg, name, help, ['target', 'type'], per(value))
  const gauge = (name: string, help: string, value: (d: (typeof devs)[number]) => number) => gaugeOf(reg, name, help, ['target', 'type'], per(value))

  gaugeOf(reg, 'lproxy_import_state', 'The import state: 1 for the state it is in, 0 for the others', ['target', 'type', 'state'], () =>
    devs.flatMap((d) => STATES.map((s): Sample<Imp | 'state'> => [{ target: d.imp.target, type: d.type, state: s }, d.imp.state === s ? 1 : 0])),
  )
  gauge('lproxy_import_full', '1 while the import is FULL and valid: I/O to the target flows', (d) => (d.imp.state === 'FULL' && !d.imp.invalid ? 1 : 0))
  counter('lproxy_import_state_transitions_total', 'Import state changes since the mount', (d) => d.imp.stats.transitions)
  counter('lproxy_import_replayed_requests_total', 'Requests replayed to a recovering target', (d) => d.imp.stats.replayedRequests)
  counter('lproxy_import_replayed_bytes_total', 'Bulk bytes of the replayed requests', (d) => d.imp.stats.replayedBytes)
  counter('lproxy_import_resends_total', 'Requests resent after their connection was lost', (d) => d.imp.stats.resends)
  counter('lproxy_import_timeouts_total', 'Requests past their deadline (each checked with a ping)', (d) => d.imp.timeouts)
  counter('lproxy_import_connection_attempts_total', 'Connects tried', (d) => d.imp.connectionAttempts)
  counter('lproxy_import_stall_seconds_total', 'Time out of FULL since the import first was FULL: how long I/O to the target waited', (d) => d.imp.stats.stallMs / 1000)
  gauge('lproxy_import_inflight_requests', 'Requests on the wire', (d) => d.imp.inflight)
  gauge('lproxy_import_delayed_requests', 'Requests waiting for the import to be FULL', (d) => d.imp.delayedCount)
  gauge('lproxy_import_unstable_bytes', 'Bytes answered but not committed by the target, kept for replay', (d) => d.imp.keptBytes)
  gauge('lproxy_import_unstable_requests', 'Requests kept for replay', (d) => d.imp.replayList.length)
  gauge('lproxy_osc_dirty_bytes', 'Bytes in the write-back cache not yet answered by the OST', (d) => (d.osc ? (fs.lov.caches.get(d.osc.index)?.cached ?? 0) : 0))

  const rpc = latencyHistogram(reg, 'lproxy_rpc_duration_seconds', 'RPC latency from send to answer, by target and op', ['target', 'type', 'op'])
  for (const d of devs) d.imp.stats.latency.watch((op, s) => rpc.observe({ target: d.imp.target, type: d.type, op }, s))

  const llite = fs.llite.stats.set
  const ops = llite.names().filter((n) => llite.unit(n) === 'usecs')
  counterOf(reg, 'lproxy_llite_operations_total', 'VFS operations (llite.*.stats)', ['op'], () => ops.map((op) => [{ op }, llite.samples(op)]))
  counterOf(reg, 'lproxy_llite_operation_seconds_total', 'Time spent in VFS operations', ['op'], () => ops.map((op) => [{ op }, llite.sum(op) / 1e6]))
  counterOf(reg, 'lproxy_llite_bytes_total', 'Bytes read and written through the mount', ['direction'], () => [
    [{ direction: 'read' }, llite.sum('read_bytes')],
    [{ direction: 'write' }, llite.sum('write_bytes')],
  ])
  return reg
}

import { Registry } from 'prom-client'
import { counterOf, gaugeOf, latencyHistogram, type Sample } from '../common/metrics.js'
import type { Target } from './target/target.js'

/**
 * A server node's /metrics (`--metrics ADDR:PORT`): per target it serves, the requests it
 * answered by op with their latency, the bytes an OST moved, recovery and exports. Counters
 * start again from zero when a target moves to another node (a new process), as a scraper
 * expects of a restart.
 */
export interface ServedTargets {
  served(): Iterable<Target>
  /** `fn` for each target served now and each one started later. */
  watchTargets(fn: (t: Target) => void): void
}

export function nodeRegistry(node: ServedTargets, labels: { node: string; nid: string }): Registry {
  const reg = new Registry()
  reg.setDefaultLabels(labels)
  const each = <L extends string>(value: (t: Target) => Iterable<Sample<L>>) => () => [...node.served()].flatMap((t) => [...value(t)])
  const one = (value: (t: Target) => number) => each((t): Iterable<Sample<'target'>> => [[{ target: t.name }, value(t)]])

  counterOf(reg, 'lproxy_target_requests_total', 'Requests the target answered, by op (obdfilter.*.stats, mdt.*.md_stats)', ['target', 'op'], each((t) => {
    const s = t.stats.set
    return s.names().filter((n) => s.unit(n) === 'usecs').map((op): Sample<'target' | 'op'> => [{ target: t.name, op }, s.samples(op)])
  }))
  counterOf(reg, 'lproxy_target_bytes_total', 'Bulk bytes an OST read and wrote', ['target', 'direction'], each((t): Iterable<Sample<'target' | 'direction'>> =>
    t.kind !== 'ost' ? [] : [[{ target: t.name, direction: 'read' }, t.stats.set.sum('read_bytes')], [{ target: t.name, direction: 'write' }, t.stats.set.sum('write_bytes')]],
  ))
  gaugeOf(reg, 'lproxy_target_recovering', '1 while the target is in recovery', ['target'], one((t) => (t.recovering ? 1 : 0)))
  gaugeOf(reg, 'lproxy_target_exports', 'Clients connected to the target', ['target'], one((t) => t.clients().filter((c) => c.connected).length))
  gaugeOf(reg, 'lproxy_target_instance', 'The target instance (a new one at every start)', ['target'], one((t) => t.instance))
  gaugeOf(reg, 'lproxy_target_last_committed', 'Highest transno on stable storage', ['target'], one((t) => t.lastCommitted))
  gaugeOf(reg, 'lproxy_target_last_transno', 'Highest transno given out', ['target'], one((t) => t.lastTransno))
  gaugeOf(reg, 'lproxy_target_recovery_replayed_requests', 'Replays executed in the current (or last) recovery', ['target'], one((t) => t.recoveryStatus().replayed_requests))

  const h = latencyHistogram(reg, 'lproxy_target_request_duration_seconds', 'Time a request spent in the target, by op (named as in its stats)', ['target', 'op'])
  node.watchTargets((t) => t.stats.latency.watch((op, s) => h.observe({ target: t.name, op }, s)))
  return reg
}

import type { ClientFs } from '../client/fs.js'
import { LpError } from '../protocol/errno.js'
import { param, parseParam } from '../common/registry.js'
import type { Osc } from '../osc/osc.js'
import { importDevices, setActive } from './devices.js'
import { getParamValues, matching, type Param, type ParamValue } from '../common/params.js'
import { importParams } from '../ptlrpc/views.js'

/**
 * The mount's parameters as lctl names them (`osc.<dev>.import`, `osc.<dev>.max_dirty_mb`,
 * `timeout`, ...): one table for get_param and set_param.
 */
export type { ParamValue }

const MiB = 1024 * 1024

/** A set_param value as the parameter registry bounds it; EINVAL naming the parameter and its range otherwise. */
function setting(name: string, v: string): number {
  return parseParam(param(name), 'client', v, (m) => new LpError('EINVAL', m))
}

export function paramTable(fs: ClientFs): Param[] {
  const t = fs.client.tunables
  const flags = ['multi_mod_rpcs', ...(fs.options.ir ? ['imp_recov'] : [])]
  const out: Param[] = [{ path: ['timeout'], get: () => t.timeout, set: (v) => void (t.timeout = setting('timeout', v)) }]
  for (const d of importDevices(fs)) {
    const at = (leaf: string) => [d.type, d.imp.name, leaf]
    out.push(...importParams(d.imp, t, fs.client.clock, flags, at))
    if (d.osc) out.push(...oscParams(fs, d.osc, at))
    if (d.type === 'mdc') out.push({ path: at('md_stats'), get: () => ({ snapshot_time: snapshot(fs), ...fs.mdc.mdStats.view() }) })
  }
  out.push(...stataheadParams(fs), ...readAheadParams(fs), { path: lliteAt(fs)('stats'), get: () => ({ snapshot_time: snapshot(fs), ...fs.llite.stats.set.view() }) })
  return out
}

/** Wall-clock seconds, as lprocfs stamps its stats files. */
function snapshot(fs: ClientFs): number {
  return Math.round(fs.client.clock.wallNow()) / 1000
}

/** The path of a parameter of the mount's llite device: llite.<fsname>-<id>.<leaf>. */
function lliteAt(fs: ClientFs): (leaf: string) => string[] {
  return (leaf) => ['llite', `${fs.config.fsname}-${fs.id}`, leaf]
}

/** llite.<fsname>-<id>.statahead_*, Lustre's names for the statahead tunables and counters. */
function stataheadParams(fs: ClientFs): Param[] {
  const sa = fs.llite.statahead
  const t = sa.tunables
  const at = lliteAt(fs)
  return [
    { path: at('statahead_max'), get: () => t.max, set: (v) => void (t.max = setting('statahead_max', v)) },
    { path: at('statahead_batch_max'), get: () => t.batch, set: (v) => void (t.batch = setting('statahead_batch_max', v)) },
    { path: at('statahead_agl'), get: () => (t.agl ? 1 : 0), set: (v) => void (t.agl = setting('statahead_agl', v) === 1) },
    { path: at('statahead_stats'), get: () => ({ ...sa.stats }) },
  ]
}

/** llite.<fsname>-<id>.max_read_ahead_mb, and what the budget holds and refused. */
function readAheadParams(fs: ClientFs): Param[] {
  const b = fs.llite.readAhead
  const at = lliteAt(fs)
  return [
    { path: at('max_read_ahead_mb'), get: () => b.maxBytes / MiB, set: (v) => void (b.maxBytes = setting('max_read_ahead_mb', v) * MiB) },
    { path: at('read_ahead_stats'), get: () => ({ snapshot_time: snapshot(fs), held_bytes: b.heldBytes, 'hit max r-a issue': b.refused }) },
  ]
}

function oscParams(fs: ClientFs, osc: Osc, at: (leaf: string) => string[]): Param[] {
  const wb = fs.lov.caches.get(osc.index)!
  return [
    {
      path: at('active'),
      get: () => (osc.imp.deactive ? 0 : 1),
      set: async (v) => void (await setActive(fs, osc.imp.name, setting('active', v) === 1, false)),
    },
    { path: at('rpc_stats'), get: () => osc.rpcStats.view(snapshot(fs), Math.ceil(wb.cached / 4096)) },
    {
      path: at('max_rpcs_in_flight'),
      get: () => wb.tunables.maxRpcsInFlight,
      set: (v) => wb.retune({ maxRpcsInFlight: setting('max_rpcs_in_flight', v) }),
    },
    {
      path: at('max_dirty_mb'),
      get: () => wb.tunables.maxDirtyBytes / MiB,
      set: (v) => wb.retune({ maxDirtyBytes: setting('max_dirty_mb', v) * MiB }),
    },
    {
      path: at('max_pages_per_rpc'),
      get: () => wb.tunables.maxRpcBytes / 4096,
      set: (v) => wb.retune({ maxRpcBytes: setting('max_pages_per_rpc', v) * 4096 }),
    },
  ]
}

export function getParams(fs: ClientFs, patterns: string[]): ParamValue[] {
  return getParamValues(paramTable(fs), patterns)
}

/** `NAME=VALUE` settings, applied in order; answers the new values. */
export async function setParams(fs: ClientFs, settings: string[]): Promise<ParamValue[]> {
  const table = paramTable(fs)
  const out: ParamValue[] = []
  for (const s of settings) {
    const eq = s.indexOf('=')
    if (eq <= 0) throw new LpError('EINVAL', `set_param: '${s}' is not NAME=VALUE`)
    for (const p of matching(table, s.slice(0, eq), 'set_param')) {
      const name = p.path.join('.')
      if (!p.set) throw new LpError('EPERM', `set_param: ${name} is read-only`)
      await p.set(s.slice(eq + 1))
      out.push({ name, value: p.get() })
    }
  }
  return out
}

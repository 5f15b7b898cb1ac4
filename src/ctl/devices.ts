import pTimeout from 'p-timeout'
import type { ClientFs } from '../client/fs.js'
import { LpError } from '../protocol/errno.js'
import { parseTargetName, targetName } from '../protocol/names.js'
import type { Osc } from '../osc/osc.js'
import type { Import } from '../ptlrpc/import.js'

/**
 * A mount's devices as Lustre names them (mgc, lov, mdc, one osc per OST): the `lctl dl`
 * list, finding an OST's osc by the names admins use, and (de)activating it.
 */
export interface ImportDevice {
  type: 'mgc' | 'mdc' | 'osc'
  imp: Import
  osc?: Osc
}

export interface Device {
  index: number
  /** IN: deactivated. */
  status: 'UP' | 'IN'
  type: 'mgc' | 'lov' | 'mdc' | 'osc'
  name: string
  uuid: string
  refcount: number
}

export function importDevices(fs: ClientFs): ImportDevice[] {
  return [
    { type: 'mgc', imp: fs.mgc.import },
    { type: 'mdc', imp: fs.mdc.imp },
    ...[...fs.lov.oscs.values()].sort((a, b) => a.index - b.index).map((osc) => ({ type: 'osc' as const, imp: osc.imp, osc })),
  ]
}

/** Lustre's order: mgc, lov, then the mdc and oscs. Refcount: the mount, the lov for an osc, and each request a device holds. */
export function deviceList(fs: ClientFs): Device[] {
  const uuid = fs.client.uuid
  const devs = importDevices(fs).map(({ type, imp }) => ({
    status: imp.deactive ? ('IN' as const) : ('UP' as const),
    type,
    name: imp.name,
    uuid,
    refcount: 1 + (type === 'osc' ? 1 : 0) + imp.inflight + imp.delayedCount,
  }))
  const lov = { status: 'UP' as const, type: 'lov' as const, name: `${fs.config.fsname}-clilov-${fs.id}`, uuid, refcount: 1 + fs.lov.oscs.size }
  return [devs[0]!, lov, ...devs.slice(1)].map((d, index) => ({ index, ...d }))
}

/** `ost2`, `OST0002`, `spfs-OST0002` or the device name `spfs-OST0002-osc-<id>`. */
export function oscOf(fs: ClientFs, what: string): Osc {
  const id = parseTargetName(what)
  const name = id?.kind === 'ost' ? targetName(fs.config.fsname, id) : undefined
  const oscs = [...fs.lov.oscs.values()]
  const osc = oscs.find((o) => o.imp.target === name || o.imp.name === what)
  if (osc) return osc
  if (id && id.kind !== 'ost') throw new LpError('EINVAL', `${what} is not an OST: only OSTs are deactivated and activated`)
  throw new LpError('ENODEV', `no OST '${what}' on this mount (OSTs: ${oscs.map((o) => o.imp.target).join(', ')})`)
}

/**
 * Deactivate or activate an OST on this client at once; `permanent` also records it on the
 * MGS (conf_param <target>.osc.active), from where every client and every later mount takes it.
 */
export async function setActive(fs: ClientFs, what: string, active: boolean, permanent: boolean): Promise<{ target: string; active: boolean; permanent: boolean }> {
  const imp = oscOf(fs, what).imp
  if (active) imp.activate()
  else imp.deactivate()
  if (permanent) {
    const ms = fs.client.tunables.obdTimeoutMs
    const verb = active ? 'activated' : 'deactivated'
    await pTimeout(fs.mgc.setParam(imp.target, 'active', active ? '1' : '0'), {
      milliseconds: ms,
      message: new LpError('ETIMEDOUT', `${imp.target}: ${verb} on this client, but the MGS did not answer within ${ms / 1000} s; the change is recorded when it answers`),
    })
  }
  return { target: imp.target, active, permanent }
}

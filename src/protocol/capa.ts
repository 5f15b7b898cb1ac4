import { createHmac, timingSafeEqual } from 'node:crypto'
import { LpError } from './errno.js'
import type { Capa } from './ops.js'

/**
 * OST capabilities, as Lustre's OSS capabilities: on a filesystem with a shared key, the
 * MDT hands a client, with each layout, its grant of read or read-write on the file's
 * objects, MACed (HMAC-SHA256) with the capability key (common/keyfile.ts deriveCapaKey),
 * which the MDT and the OSTs derive from the master and no client holds. The OST serves an
 * object only with a capability for its FID, made for the requesting client, for the op, not
 * expired. The key being derived from the master, capabilities outlive any server restart.
 */

/** Long enough never to bite a running job between two of its lookups (Lustre's default capa timeout is one hour too). */
export const CAPA_LIFETIME_MS = 60 * 60_000
/**
 * Expiries are rounded up to this: grants of the same file to the same client a few minutes
 * apart are the same capability, so a layout fetched again compares equal to the cached one.
 */
export const CAPA_ROUND_MS = 10 * 60_000
/** A client renews a capability this close to its expiry, before using it. */
export const CAPA_RENEW_MS = 5 * 60_000

export type CapaOps = Capa['ops']

/** The OST ops and what they need: reading, or changing the object. */
export const CAPA_NEED: Record<string, 'r' | 'w'> = {
  ost_read: 'r',
  ost_getattr: 'r',
  ost_write: 'w',
  ost_punch: 'w',
  ost_setattr: 'w',
}

function capaMac(key: Buffer, fid: number, client: string, ops: CapaOps, expiry: number): Buffer {
  return createHmac('sha256', key).update(`lproxy-capa-v1\n${JSON.stringify([fid, client, ops, expiry])}`).digest()
}

export function makeCapa(key: Buffer, fid: number, client: string, ops: CapaOps, now: number): Capa {
  const expiry = Math.ceil((now + CAPA_LIFETIME_MS) / CAPA_ROUND_MS) * CAPA_ROUND_MS
  return { fid, ops, expiry, mac: capaMac(key, fid, client, ops, expiry).toString('base64url') }
}

/**
 * EACCES unless `capa` grants `client` the op on `fid` now. `replay`: a replayed change the
 * OST executed once already (under a capability valid then) passes an expiry met since.
 */
export function checkCapa(key: Buffer, capa: Capa | undefined, fid: number, client: string, op: string, now: number, replay = false): void {
  const need = CAPA_NEED[op]
  if (!need) return
  if (!capa) throw new LpError('EACCES', `${op} of FID ${fid}: ${CAPA_MISSING} (on a filesystem with a shared key the MDT hands one out with the layout)`)
  if (capa.fid !== fid) throw new LpError('EACCES', `${op} of FID ${fid}: the capability is for FID ${capa.fid}`)
  const given = Buffer.from(capa.mac, 'base64url')
  const want = capaMac(key, capa.fid, client, capa.ops, capa.expiry)
  if (given.length !== want.length || !timingSafeEqual(given, want))
    throw new LpError('EACCES', `${op} of FID ${fid}: the capability does not verify for client ${client} (forged, or granted to another client)`)
  if (need === 'w' && capa.ops !== 'rw') throw new LpError('EACCES', `${op} of FID ${fid}: the capability grants reading only`)
  if (!replay && capa.expiry <= now) throw new LpError('EACCES', `${op} of FID ${fid}: ${CAPA_EXPIRED} at ${new Date(capa.expiry).toISOString()}`)
}

/** Said by an OST's refusals the client mends by fetching the capability again from the MDT and trying once more. */
const CAPA_EXPIRED = 'the capability expired'
const CAPA_MISSING = 'the request carries no capability'

export function capaRenewable(e: LpError): boolean {
  return e.code === 'EACCES' && (e.message.includes(CAPA_EXPIRED) || e.message.includes(CAPA_MISSING))
}

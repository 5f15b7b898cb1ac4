import { isIPv4 } from 'node:net'

/**
 * LNet-style network identifiers: `host@tcp[N]` or `host@http[N]`. A mgsspec / failover
 * spec joins NIDs with ':' (as mount -t lustre does); ',' also separates NIDs of one node.
 * The network type chooses the transport, as LNet's does its LND: `tcp` lproxy's binary
 * messages over TCP, `http` HTTP/1.1 (for sites whose paths cross HTTP proxies).
 */
export interface Nid {
  host: string
  net: string
}

const NET_RE = /^(?:tcp|http)\d*$/
const HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*$/

export class NidError extends Error {}

export function parseNid(text: string): Nid {
  const s = text.trim()
  const at = s.lastIndexOf('@')
  if (at <= 0) throw new NidError(`invalid NID '${text}': expected host@tcp (e.g. 127.0.1.1@tcp or mds16@tcp0)`)
  const host = s.slice(0, at)
  const net = s.slice(at + 1)
  if (!NET_RE.test(net)) throw new NidError(`invalid NID '${text}': network '${net}' is not supported (only tcp, tcp0, tcp1, ... and http, http0, ...)`)
  // All digits and dots is meant as an address (no top-level domain is numeric): it must be one.
  if (!HOST_RE.test(host) || (/^[\d.]+$/.test(host) && !isIPv4(host)))
    throw new NidError(`invalid NID '${text}': '${host}' is not a host name or IPv4 address`)
  return { host, net }
}

export function formatNid(n: Nid): string {
  return `${n.host}@${n.net}`
}

/** `a@tcp:b@tcp` -> [[a], [b]]; `a@tcp,a2@tcp:b@tcp` -> [[a, a2], [b]] (one group per node). */
export function parseNidSpec(spec: string): Nid[][] {
  if (!spec || !spec.trim()) throw new NidError('empty NID list')
  return spec.split(':').map((group) => {
    if (!group.trim()) throw new NidError(`invalid NID list '${spec}': empty entry`)
    return group.split(',').map(parseNid)
  })
}

/** Flattened connection list of a spec, in order, without duplicates. */
export function nidList(spec: string): string[] {
  const out: string[] = []
  for (const group of parseNidSpec(spec)) for (const n of group) {
    const s = formatNid(n)
    if (!out.includes(s)) out.push(s)
  }
  return out
}

/** NID patterns separated by ',' or ' ', each host@net or `*@net` for every host of a network (nosquash_nids). */
export function nidPatternList(v: string): string[] {
  return v
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((n) => (n.startsWith('*@') ? `*@${parseNid(`h${n.slice(1)}`).net}` : nidList(n)[0]!))
}

export type Lnd = 'tcp' | 'http'

/** The transport a NID's network type selects. */
export function lndOf(nid: string): Lnd {
  return parseNid(nid).net.startsWith('http') ? 'http' : 'tcp'
}

/** The filesystem-wide port, LNet's acceptor port unless configured otherwise. */
export const DEFAULT_PORT = 988

export function nidHost(nid: string): string {
  return parseNid(nid).host
}

/** A file-name-safe token for a NID (for socket and log names). */
export function nidToken(nid: string): string {
  return nid.replace(/[^A-Za-z0-9.]/g, '_')
}

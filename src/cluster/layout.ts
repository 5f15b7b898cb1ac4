import path from 'node:path'
import { z } from 'zod'
import { exactly } from '../common/exact.js'
import { readJson, writeFileAtomic } from '../common/fsutil.js'
import type { TlsFiles } from '../common/tls.js'
import { DEFAULT_PORT } from '../protocol/nid.js'
import { targetName } from '../protocol/names.js'
import type { FormatOptions } from '../server/target/config.js'
import { CLIENT, CLIENT_HOST, nsName } from './netns.js'

/**
 * The shape of the embedded local cluster (decided question 14): an MGS+MDT failover pair
 * and two OSTs on an active/active OSS pair, and its record, `<dir>/cluster.json`.
 */
export const FSNAME = 'spfs'
export const DEFAULT_DIR = './lproxy-cluster'
export const DEFAULT_NET = '127.0.1'
/** The /24 of `up --netns`: veths cannot carry 127.0.0.0/8. */
export const DEFAULT_NETNS_NET = '10.77.1'
export { DEFAULT_PORT }

/** Node name -> last octet of its address on the cluster's /24. */
const NODE_HOSTS: Record<string, number> = { mds1: 1, mds2: 2, oss1: 11, oss2: 12 }

export interface ClusterNode {
  nid: string
  /** Last PID seen serving on this node; checked against /proc before it is acted on. */
  pid?: number
}

export interface ClusterTarget {
  /** Names it serves, e.g. ['MGS', 'spfs-MDT0000']. */
  names: string[]
  dir: string
  primary: string
  failover: string
}

export interface ClusterMount {
  mountpoint: string
  /** False after `up --no-mount`. */
  enabled: boolean
  pid?: number
  /** /proc start time of the daemon, to recognise its PID later. */
  pidStart?: number
}

export interface ClusterFile {
  version: 1
  fsname: string
  net: string
  port: number
  nodes: Record<string, ClusterNode>
  targets: Record<string, ClusterTarget>
  mount: ClusterMount
  /** Tunables given to `up` (sys.timeout, ...), passed to every start of a target. */
  params: Record<string, string>
  /** Short names of the OSTs formatted with failover.mode=failout. */
  failout: string[]
  /** Formatted with a shared key (keys.ts's files): the mount and admin commands sign with it. */
  keyed?: boolean
  /** Set by `up --netns`: the id of the network namespaces the nodes and the client run in. */
  netns?: string
  /** Made with `up --tls`: mutual TLS everywhere, certificates in <dir>/tls. */
  tls?: boolean
}

const pid = z.number().int().min(1).optional()
const clusterFileSchema = exactly<ClusterFile>()(
  z.object({
    version: z.literal(1),
    fsname: z.string(),
    net: z.string(),
    port: z.number().int().min(1).max(65535),
    nodes: z.record(z.string(), z.object({ nid: z.string(), pid })),
    targets: z.record(z.string(), z.object({ names: z.array(z.string()), dir: z.string(), primary: z.string(), failover: z.string() })),
    mount: z.object({ mountpoint: z.string(), enabled: z.boolean(), pid, pidStart: z.number().min(0).optional() }),
    params: z.record(z.string(), z.string()),
    failout: z.array(z.string()),
    keyed: z.boolean().optional(),
    netns: z.string().regex(/^\d{1,3}$/).optional(),
    tls: z.boolean().optional(),
  }),
)

export const CLUSTER_FILE = 'cluster.json'
/** Where a node started by `lproxy start` logs when no --log is given. */
export const DEFAULT_LOG_DIR = '/var/log/lproxy'

export function defaultLog(name: string): string {
  return path.join(DEFAULT_LOG_DIR, `${name}.log`)
}

export const OSTS = ['ost1', 'ost2']

export function checkNet(net: string): void {
  const parts = net.split('.')
  if (parts.length !== 3 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255))
    throw new Error(`invalid --net '${net}': the first three octets of an IPv4 /24, e.g. 127.0.1`)
}

/** The network namespace `node` (or the client) runs in; undefined on the loopback cluster. */
export function nodeNs(cf: ClusterFile, node: string): string | undefined {
  return cf.netns === undefined ? undefined : nsName(cf.netns, node)
}

/** Every node's and the client's last octet, for the netns cluster's addresses. */
export function clusterHosts(): Record<string, number> {
  return { ...NODE_HOSTS, [CLIENT]: CLIENT_HOST }
}

export function nidOf(net: string, node: string): string {
  return `${net}.${NODE_HOSTS[node]}@tcp`
}

export function logOf(dir: string, node: string): string {
  return path.join(dir, 'logs', `${node}.log`)
}

export function newClusterFile(o: {
  dir: string
  net: string
  port: number
  mountpoint: string
  mount: boolean
  params: Record<string, string>
  failout: string[]
  keyed: boolean
  tls: boolean
  netns?: string
}): ClusterFile {
  const t = (names: string[], sub: string, primary: string, failover: string): ClusterTarget => ({
    names,
    dir: path.join(o.dir, 'targets', sub),
    primary,
    failover,
  })
  return {
    version: 1,
    fsname: FSNAME,
    net: o.net,
    port: o.port,
    nodes: Object.fromEntries(Object.keys(NODE_HOSTS).map((n) => [n, { nid: nidOf(o.net, n) }])),
    targets: {
      mdt0: t(['MGS', targetName(FSNAME, { kind: 'mdt', index: 0 })], 'mdt0', 'mds1', 'mds2'),
      ost1: t([targetName(FSNAME, { kind: 'ost', index: 1 })], 'ost1', 'oss1', 'oss2'),
      ost2: t([targetName(FSNAME, { kind: 'ost', index: 2 })], 'ost2', 'oss2', 'oss1'),
    },
    mount: { mountpoint: o.mountpoint, enabled: o.mount },
    params: o.params,
    failout: o.failout,
    keyed: o.keyed,
    ...(o.netns !== undefined ? { netns: o.netns } : {}),
    tls: o.tls,
  }
}

/** What `lproxy format` is given for each target of the cluster. */
export function formatOptions(cf: ClusterFile, key: string, reformat: boolean): FormatOptions {
  const t = cf.targets[key]!
  const nid = (n: string) => cf.nodes[n]!.nid
  const params = Object.entries(cf.params).map(([k, v]) => `${k}=${v}`)
  if (cf.failout.includes(key)) params.push('failover.mode=failout')
  if (cf.tls) params.push('tls=required')
  const common = { dir: t.dir, fsname: cf.fsname, failnodes: [nid(t.failover)], port: cf.port, params, reformat }
  if (key === 'mdt0') return { ...common, mgs: true, mdt: true, ost: false, index: 0 }
  return { ...common, mgs: false, mdt: false, ost: true, index: Number(key.slice(3)), mgsnode: mgsSpec(cf) }
}

export function mgsSpec(cf: ClusterFile): string {
  return `${cf.nodes.mds1!.nid}:${cf.nodes.mds2!.nid}`
}

export async function readClusterFile(dir: string): Promise<ClusterFile | undefined> {
  return readJson(path.join(dir, CLUSTER_FILE), clusterFileSchema)
}

export async function writeClusterFile(dir: string, cf: ClusterFile): Promise<void> {
  await writeFileAtomic(path.join(dir, CLUSTER_FILE), JSON.stringify(cf, null, 2) + '\n')
}

export const TLS_DIR = 'tls'
/** The mount's certificate: a client has no address of its own to name. */
export const CLIENT_CERT = 'client'

/** The certificate files of a node, or of the mount (`client`), in a cluster made with --tls. */
export function tlsOf(dir: string, cf: ClusterFile, name: string): TlsFiles | undefined {
  if (!cf.tls) return undefined
  const d = path.join(dir, TLS_DIR)
  return { ca: path.join(d, 'ca.crt'), cert: path.join(d, `${name}.crt`), key: path.join(d, `${name}.key`) }
}

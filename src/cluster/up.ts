import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { mountFs } from '../client/mount.js'
import { formatTarget, readConfig, type TargetConfig } from '../server/target/config.js'
import { clusterDown } from './down.js'
import {
  checkNet, CLIENT_CERT, clusterHosts, DEFAULT_NET, DEFAULT_NETNS_NET, DEFAULT_PORT, formatOptions, logOf, mgsSpec, newClusterFile, nodeNs, readClusterFile, tlsOf, OSTS, type ClusterFile,
} from './layout.js'
import { clusterKeys, makeClusterKeys } from './keys.js'
import { ensureClusterPki } from './pki.js'
import { LocalCluster, type Placement } from './local.js'
import { CLIENT, createNet, deleteNet, netnsId } from './netns.js'
import { startTime } from './proc.js'
import { clusterStatus, running } from './status.js'

/**
 * `cluster up`: format what is not formatted yet (or everything, with reformat), start each
 * target on its primary node, then mount. Either all of it comes up or nothing is left running.
 */
export interface UpOptions {
  dir: string
  /** Unset: the previous run's, else <dir>/mnt. */
  mountpoint?: string
  mount: boolean
  net?: string
  port?: number
  /** Server tunables (sys.timeout, commit_interval, ...), over those of the previous run. */
  params: Record<string, string>
  /** OSTs to format with failover.mode=failout; unset: as formatted. */
  failout?: string[]
  reformat: boolean
  /** Format with a shared key (default); a cluster already formatted stays as it was. */
  key?: boolean
  /** Every node and the client in a network namespace of its own (default: as the previous run). */
  netns?: boolean
  /** Mutual TLS everywhere (kept by later runs until --reformat). */
  tls?: boolean
}

export interface UpResult {
  dir: string
  cluster: ClusterFile
  formatted: string[]
  placements: Placement[]
  mounted: boolean
  warnings: string[]
}

export async function clusterUp(o: UpOptions): Promise<UpResult> {
  const dir = path.resolve(o.dir)
  const old = await readClusterFile(dir)
  if (old) {
    const busy = running(await clusterStatus(new LocalCluster(dir, old)))
    if (busy.length) throw new Error(`the cluster in ${dir} is already up: ${busy.join('; ')}; 'lproxy cluster down --dir ${o.dir}' stops it`)
  }
  const netns = o.netns ?? old?.netns !== undefined
  // The previous run's net only if it ran the same way: a loopback /24 cannot go on veths, nor back.
  const oldNet = old && (old.netns !== undefined) === netns ? old.net : undefined
  const net = o.net ?? oldNet ?? (netns ? DEFAULT_NETNS_NET : DEFAULT_NET)
  checkNet(net)
  const nsId = netns ? netnsId(net) : undefined
  const port = o.port ?? old?.port ?? DEFAULT_PORT
  if (old && !o.reformat && (net !== old.net || port !== old.port))
    throw new Error(`${dir} holds a cluster formatted for net ${old.net}, port ${old.port}: use those, or --reformat`)
  const mountpoint = path.resolve(o.mountpoint ?? old?.mount.mountpoint ?? path.join(dir, 'mnt'))
  const keyed = old && !o.reformat ? old.keyed === true : o.key !== false
  // Targets formatted with tls=required refuse a plaintext node: TLS stays until --reformat.
  const tls = o.tls === true || (!o.reformat && old?.tls === true)
  const lc = new LocalCluster(dir, newClusterFile({ dir, net, port, mountpoint, mount: o.mount, params: { ...old?.params, ...o.params }, failout: [], keyed, tls, netns: nsId }))
  const failout = o.failout?.map((name) => ostKey(lc, name))

  await fsp.mkdir(path.join(dir, 'logs'), { recursive: true })
  if (keyed) await makeClusterKeys(dir, lc.cf.fsname, o.reformat)
  if (tls) await ensureClusterPki(lc, o.reformat || old?.tls !== true)
  const formatted = await formatAll(lc, failout, o.reformat, keyed ? clusterKeys(dir).master : undefined)
  await lc.save()

  if (nsId !== undefined) {
    // Leftovers of this same cluster (its busy check passed): anything else there is refused.
    if (old?.netns === nsId) await deleteNet(nsId)
    await createNet({ id: nsId, net, hosts: clusterHosts() })
  }
  const placements: Placement[] = []
  const warnings: string[] = []
  try {
    placements.push(...(await lc.startOn('mds1', ['mdt0'])))
    // The OSTs register with the MGS, so they follow the MDT's node.
    const osts = await Promise.allSettled([lc.startOn('oss1', ['ost1']), lc.startOn('oss2', ['ost2'])])
    for (const r of osts) if (r.status === 'rejected') throw r.reason
    for (const r of osts) if (r.status === 'fulfilled') placements.push(...r.value)
  } catch (e) {
    throw await rolledBack(lc, e as Error)
  }
  await lc.save()

  if (o.mount) {
    try {
      await fsp.mkdir(mountpoint, { recursive: true })
      const timeout = lc.cf.params['sys.timeout']
      const certs = tlsOf(dir, lc.cf, CLIENT_CERT)
      const options = [
        ...(timeout ? [`timeout=${timeout}`] : []),
        ...(keyed ? [`keyfile=${clusterKeys(dir).fs}`] : []),
        ...(certs ? [`tls,ca=${certs.ca},cert=${certs.cert},key=${certs.key}`] : []),
      ]
      const info = await mountFs({
        mgsnode: mgsSpec(lc.cf),
        mountpoint,
        options,
        log: logOf(dir, 'client'),
        port,
        netns: nodeNs(lc.cf, CLIENT),
      })
      warnings.push(...info.warnings)
      lc.cf.mount.pid = info.pid
      lc.cf.mount.pidStart = await startTime(info.pid)
    } catch (e) {
      throw await rolledBack(lc, e as Error, ' (--no-mount runs the servers alone)')
    }
    await lc.save()
  }
  return { dir, cluster: lc.cf, formatted, placements, mounted: o.mount, warnings }
}

function ostKey(lc: LocalCluster, name: string): string {
  const key = lc.targetKey(name)
  if (!key || !OSTS.includes(key)) throw new Error(`--failout ${name}: not an OST of the cluster (${OSTS.join(', ')})`)
  return key
}

/** Formats the targets not formatted yet; records which ones are failout, as formatted. */
async function formatAll(lc: LocalCluster, failout: string[] | undefined, reformat: boolean, keyFile: string | undefined): Promise<string[]> {
  const formatted: string[] = []
  lc.cf.failout = failout ?? []
  const isFailout = (c: TargetConfig) => c.params['failover.mode'] === 'failout'
  const configs: Record<string, TargetConfig> = {}
  for (const key of lc.targetKeys) {
    const existing = reformat ? undefined : await readConfig(lc.cf.targets[key]!.dir).catch(() => undefined)
    if (existing && failout && failout.includes(key) !== isFailout(existing))
      throw new Error(`${key} is formatted as ${isFailout(existing) ? 'failout' : 'failover'}; --reformat to change that`)
    configs[key] = existing ?? (await formatTarget({ ...formatOptions(lc.cf, key, reformat), keyFile }))
    if (!existing) formatted.push(key)
  }
  lc.cf.failout = lc.targetKeys.filter((k) => isFailout(configs[k]!))
  return formatted
}

/** Stop whatever started, keep the data, and say so in the error. */
async function rolledBack(lc: LocalCluster, e: Error, hint = ''): Promise<Error> {
  await clusterDown(lc, { purge: false }).catch(() => undefined)
  return new Error(`${e.message}; the servers started were stopped again${hint}`)
}

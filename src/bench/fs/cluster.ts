import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { clusterDown } from '../../cluster/down.js'
import { LocalCluster } from '../../cluster/local.js'
import { clusterUp } from '../../cluster/up.js'
import { LproxyMount } from './lproxy.js'
import { memoryDir, storageOf } from './storage.js'

/**
 * The embedded cluster for a bench run: formatted afresh in a new directory, by default on
 * tmpfs (/dev/shm) so the targets are backed by memory as the goals assume, with the
 * cluster's default settings unless told (`params`: sys.timeout); torn down after.
 */
export interface BenchCluster {
  dir: string
  fs: LproxyMount
  down(): Promise<void>
}

export async function benchCluster(o: { dir?: string; net: string; port: number; params: Record<string, string>; tls: boolean; key: boolean; stripeCount: number; netns?: boolean }): Promise<BenchCluster> {
  const dir = o.dir ? path.resolve(o.dir) : await memoryDir('lproxy-bench-')
  let fs: LproxyMount | null = null
  const down = async () => {
    // No remount of the bench may race the teardown (an interrupt lands between phases).
    await fs?.close()
    const lc = await LocalCluster.open(dir).catch(() => null)
    if (lc) await clusterDown(lc, { purge: !o.dir })
    else if (!o.dir) await fsp.rm(dir, { recursive: true, force: true })
  }
  try {
    const up = await clusterUp({ dir, mount: true, net: o.net, port: o.port, params: o.params, tls: o.tls, key: o.key, reformat: true, netns: o.netns })
    const settings = Object.entries(o.params).map(([k, v]) => `${k}=${v}`).join(', ') || 'default settings'
    fs = new LproxyMount(up.cluster.mount.mountpoint, `embedded cluster in ${dir} on ${await storageOf(dir)} (net ${o.net}${o.netns ? ' in network namespaces' : ''}, port ${o.port}${o.key ? ', shared key' : ', no key'}${o.tls ? ', mutual TLS' : ''}), ${settings}`, o.stripeCount)
    return { dir, fs, down }
  } catch (e) {
    await down().catch(() => undefined)
    throw e
  }
}

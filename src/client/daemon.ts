import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { realClock } from '../common/clock.js'
import { createLogger } from '../common/log.js'
import { loadSigningKey } from '../common/keyfile.js'
import { clientSocket } from '../common/rundir.js'
import { openFuse, type FuseBinding } from '../fuse/binding.js'
import { serveCtl } from '../ctl/server.js'
import type { MetricsServer } from '../common/metrics.js'
import { ClientFs } from './fs.js'
import { parseOptions } from './options.js'
import { mountSource } from './source.js'

/**
 * The mount daemon: one per mountpoint. It must not touch its own mount synchronously (the
 * mount is served by this process's event loop), which is why it is a process of its own.
 */
export interface DaemonArgs {
  mgsnode: string
  /** The filesystem the MGS must serve (a mount by source names it); any when absent. */
  fsname?: string
  mountpoint: string
  options: string[]
  log: string
  port: number
}

export interface DaemonReport {
  ok: boolean
  pid?: number
  error?: string
  errno?: string
  warnings?: string[]
}

/** Linux 6.14+ may abort FUSE requests that wait too long; failover waits indefinitely. */
export async function fuseTimeoutWarnings(): Promise<string[]> {
  const out: string[] = []
  for (const name of ['default_request_timeout', 'max_request_timeout']) {
    const v = await fsp.readFile(`/proc/sys/fs/fuse/${name}`, 'utf8').catch(() => '0')
    if (Number(v.trim()) > 0)
      out.push(`/proc/sys/fs/fuse/${name} is ${v.trim()} s: the kernel will abort requests that wait longer, cutting failover's indefinite wait short (set it to 0)`)
  }
  return out
}

export async function runDaemon(a: DaemonArgs, report: (r: DaemonReport) => void): Promise<void> {
  const log = createLogger({ name: 'client', file: a.log })
  let fs: ClientFs | null = null
  let fuse: FuseBinding | null = null
  let metrics: MetricsServer | null = null
  let stopping = false
  const shutdown = async (code: number) => {
    if (stopping) return
    stopping = true
    log.info({ mountpoint: a.mountpoint }, 'unmounting')
    // Write back what can be written back in a bounded time; then closing the imports fails
    // whatever still waits (a request to a dead target would otherwise hold a FUSE thread,
    // and the unmount, forever).
    if (fs) await fs.llite.writeBackAll(fs.client.tunables.obdTimeoutMs).catch((e) => log.error({ err: (e as Error).message }, 'write-back at unmount failed'))
    await metrics?.close()
    await fs?.close().catch(() => undefined)
    await fuse?.unmount().catch((e) => log.error({ err: (e as Error).message }, 'FUSE unmount failed'))
    await fsp.rm(clientSocket(a.mountpoint), { force: true })
    log.info({}, 'unmounted')
    log.flush()
    setTimeout(() => process.exit(code), 50)
  }
  try {
    const opts = parseOptions(a.options)
    const warnings = await fuseTimeoutWarnings()
    const key = opts.keyfile ? await loadSigningKey(opts.keyfile, 'fs') : undefined
    if (!key) warnings.push('no keyfile= mount option: this client\'s RPCs are not authenticated (a filesystem formatted with a key refuses them)')
    for (const w of warnings) log.warn({}, w)
    fs = await ClientFs.connect({ mgsnode: a.mgsnode, fsname: a.fsname, port: a.port, options: opts, clock: realClock, log, key })
    if (opts.metrics) {
      // prom-client is loaded only where metrics are served.
      const [{ serveMetrics }, { clientRegistry }] = await Promise.all([import('../common/metrics.js'), import('../ctl/metrics.js')])
      metrics = await serveMetrics(opts.metrics, clientRegistry(fs), log)
    }
    // Unmounted from outside: a daemon left running would hold its imports, and its export on every target.
    const ended = () => {
      log.warn({ mountpoint: a.mountpoint }, 'the kernel ended the FUSE session (unmounted from outside, or the connection was aborted)')
      void shutdown(0)
    }
    fuse = await openFuse(opts.fuse, fs.llite, { mountpoint: a.mountpoint, fsname: mountSource(a.mgsnode, fs.config.fsname), attrTimeoutS: opts.actimeo, dev: opts.dev, flags: opts.flags, log, ended })
    await fuse.mount()
    await serveCtl({ fs, mountpoint: a.mountpoint, umount: () => shutdown(0) })
    process.on('SIGTERM', () => void shutdown(0))
    process.on('SIGINT', () => void shutdown(0))
    log.info({ mountpoint: a.mountpoint, client: fs.client.uuid }, `mounted ${fs.config.fsname} on ${a.mountpoint}`)
    report({ ok: true, pid: process.pid, warnings })
  } catch (e) {
    const err = e as Error & { code?: string }
    log.error({ err: err.message }, 'mount failed')
    report({ ok: false, error: err.message, errno: err.code })
    await shutdown(1)
  }
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/.*\/dist\//, 'dist/'))) {
  const { values } = parseArgs({
    options: {
      mgsnode: { type: 'string' },
      fsname: { type: 'string' },
      mountpoint: { type: 'string' },
      options: { type: 'string' },
      log: { type: 'string' },
      port: { type: 'string' },
    },
  })
  void runDaemon(
    {
      mgsnode: values.mgsnode!,
      fsname: values.fsname,
      mountpoint: path.resolve(values.mountpoint!),
      options: JSON.parse(values.options ?? '[]') as string[],
      log: values.log!,
      port: Number(values.port),
    },
    (r) => {
      // Disconnect only once the report is flushed, or the parent may never see it.
      process.send?.(r, () => process.disconnect())
    },
  )
}

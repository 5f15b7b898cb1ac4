import { parseArgs } from 'node:util'
import { realClock } from '../common/clock.js'
import { createLogger } from '../common/log.js'
import { sdNotify } from '../common/sdnotify.js'
import { loadTls, tlsFiles, type TlsFiles, type TlsMaterial } from '../common/tls.js'
import { parseNid, formatNid } from '../protocol/nid.js'
import { parseListenAddress } from '../common/listen.js'
import { ServerNode } from './node.js'

/**
 * Entry of a server node process, spawned by `lproxy start` (or run in the foreground with
 * -f). It mounts its first target, then tells its parent over IPC whether that worked.
 */
export interface NodeArgs {
  nid: string
  name: string
  port: number
  log?: string
  dir: string
  params: Record<string, string>
  /** Start past journal damage from the last good record (--discard-corrupt-journal). */
  discardCorruptJournal?: boolean
  /** Serve /metrics here (ADDR:PORT); none by default. */
  metrics?: string
  /** Mutual TLS on the node's port and its own RPCs. */
  tls?: TlsFiles
}

export async function runNode(a: NodeArgs, report: (msg: { ok: boolean; targets?: string[]; error?: string; errno?: string }) => void): Promise<void> {
  const log = createLogger({ name: `node-${a.name}`, file: a.log })
  let tls: TlsMaterial | undefined
  try {
    tls = a.tls && (await loadTls(a.tls))
  } catch (e) {
    report({ ok: false, error: (e as Error).message, errno: 'EINVAL' })
    return void setTimeout(() => process.exit(1), 50)
  }
  let exiting = false
  const node = new ServerNode({
    nid: a.nid,
    name: a.name,
    port: a.port,
    clock: realClock,
    log,
    tls,
    onEmpty: () => {
      if (exiting) return
      exiting = true
      log.info({}, 'no target left on this node, exiting')
      void node.close().finally(() => setTimeout(() => process.exit(0), 50))
    },
  })
  process.on('SIGTERM', () => {
    if (exiting) return
    exiting = true
    log.info({}, 'SIGTERM: stopping every target cleanly')
    void sdNotify({ STOPPING: '1' }, log)
    void node.shutdown().finally(() => setTimeout(() => process.exit(0), 50))
  })
  try {
    await node.listen()
    if (a.metrics) {
      // prom-client is loaded only where metrics are served: a quarter of a node's start-up CPU.
      const [{ serveMetrics }, { nodeRegistry }] = await Promise.all([import('../common/metrics.js'), import('./metrics.js')])
      await serveMetrics(parseListenAddress('--metrics', a.metrics), nodeRegistry(node, { node: a.name, nid: a.nid }), log)
    }
    const targets = await node.mountDir(a.dir, a.params, { discardCorruptJournal: a.discardCorruptJournal })
    report({ ok: true, targets })
    // A Type=notify unit (systemd/lproxy-target@.service) is started once the target serves.
    await sdNotify({ READY: '1', STATUS: `${targets.join(', ')}: serving on ${a.nid}` }, log)
  } catch (e) {
    const err = e as Error & { code?: string }
    log.error({ err: err.message }, 'start failed')
    report({ ok: false, error: err.message, errno: err.code })
    await node.close().catch(() => undefined)
    setTimeout(() => process.exit(1), 50)
  }
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/.*\/dist\//, 'dist/'))) {
  const { values } = parseArgs({
    options: {
      nid: { type: 'string' },
      name: { type: 'string' },
      port: { type: 'string' },
      log: { type: 'string' },
      dir: { type: 'string' },
      params: { type: 'string' },
      'discard-corrupt-journal': { type: 'boolean' },
      metrics: { type: 'string' },
      'tls-ca': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
    },
  })
  const nid = formatNid(parseNid(values.nid!))
  void runNode(
    {
      nid,
      name: values.name ?? parseNid(nid).host,
      port: Number(values.port),
      log: values.log,
      dir: values.dir!,
      params: values.params ? (JSON.parse(values.params) as Record<string, string>) : {},
      discardCorruptJournal: values['discard-corrupt-journal'],
      metrics: values.metrics,
      tls: tlsFiles({ ca: values['tls-ca'], cert: values['tls-cert'], key: values['tls-key'] }, '--tls-ca, --tls-cert and --tls-key'),
    },
    (msg) => {
      // Disconnect only once the report is flushed, or the parent may never see it.
      process.send?.(msg, () => process.disconnect())
    },
  )
}

import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { LpError, type ErrnoName } from '../protocol/errno.js'
import { DATA_PROCESS_FLAGS } from '../common/v8flags.js'
import { inNetns } from '../common/netns.js'
import type { TlsFiles } from '../common/tls.js'

/**
 * Starting a server node as a detached daemon: it outlives the command that started it, and
 * reports over IPC whether its first target came up before the command returns.
 */
export interface SpawnNodeOptions {
  nid: string
  name: string
  port: number
  dir: string
  log: string
  params: Record<string, string>
  discardCorruptJournal?: boolean
  /** Network namespace to run the node in (the netns cluster). */
  netns?: string
  /** ADDR:PORT to serve /metrics on. */
  metrics?: string
  tls?: TlsFiles
}

export interface Spawned {
  pid: number
  targets: string[]
}

/** The node entry next to this module in dist/ (the CLI always runs compiled). */
const NODE_MAIN = fileURLToPath(new URL('../server/main.js', import.meta.url))

const EXIT_WAIT_MS = 5000

export function spawnNode(o: SpawnNodeOptions): Promise<Spawned> {
  const args = [...DATA_PROCESS_FLAGS, NODE_MAIN, '--nid', o.nid, '--name', o.name, '--port', String(o.port), '--dir', o.dir, '--log', o.log]
  if (Object.keys(o.params).length) args.push('--params', JSON.stringify(o.params))
  if (o.discardCorruptJournal) args.push('--discard-corrupt-journal')
  if (o.metrics) args.push('--metrics', o.metrics)
  if (o.tls) args.push(...tlsArgs(o.tls))
  const [cmd, argv] = inNetns(o.netns, process.execPath, args)
  const child = spawn(cmd, argv, { detached: true, stdio: ['ignore', 'ignore', 'ignore', 'ipc'] })
  return new Promise((resolve, reject) => {
    let settled = false
    let failure: Error | null = null
    const done = (err: Error | null, value?: Spawned) => {
      if (settled) return
      settled = true
      if (child.connected) child.disconnect()
      child.unref()
      if (err) reject(err)
      else resolve(value!)
    }
    child.on('message', (m: { ok: boolean; targets?: string[]; error?: string; errno?: string }) => {
      if (m.ok) return done(null, { pid: child.pid!, targets: m.targets ?? [] })
      // A failed node exits by itself; settle on its exit, so that nothing is left running.
      failure = new LpError((m.errno ?? 'EIO') as ErrnoName, m.error ?? `node ${o.name} failed to start`)
      setTimeout(() => child.kill('SIGKILL'), EXIT_WAIT_MS).unref()
    })
    child.on('error', (e) => done(new Error(`cannot start node ${o.name}: ${e.message}`)))
    child.on('exit', (code, sig) =>
      done(failure ?? new Error(`node ${o.name} (${o.nid}) exited (${sig ?? `code ${code}`}) before reporting; see ${o.log}`)),
    )
  })
}

/** A node's TLS files as its command line takes them. */
export function tlsArgs(f: TlsFiles): string[] {
  return ['--tls-ca', f.ca, '--tls-cert', f.cert, '--tls-key', f.key]
}

import { spawn } from 'node:child_process'
import net from 'node:net'
import { sleep } from '../../cluster/proc.js'

/** A server a peer needs (sshd, rclone serve webdav), run as our child on a loopback port. */
const READY_WAIT_MS = 15_000

export interface Service {
  port: number
  stop(): Promise<void>
}

/** A free TCP port on 127.0.0.1 (the kernel's pick; the service binds it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => resolve(port))
    })
  })
}

export async function startService(name: string, argv: string[], port: number): Promise<Service> {
  let stderr = ''
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] })
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-4096)))
  child.once('error', (e) => (stderr += e.message))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const t = setTimeout(() => child.kill('SIGKILL'), 5000)
    child.kill('SIGTERM')
    await exited
    clearTimeout(t)
  }
  const end = Date.now() + READY_WAIT_MS
  while (!(await accepts(port))) {
    if (child.exitCode !== null || Date.now() > end) {
      await stop()
      throw new Error(`${name} ('${argv.join(' ')}') did not listen on 127.0.0.1:${port}: ${stderr.trim() || 'timed out'}`)
    }
    await sleep(100)
  }
  return { port, stop }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection({ host: '127.0.0.1', port })
    s.once('connect', () => (s.destroy(), resolve(true)))
    s.once('error', () => resolve(false))
  })
}

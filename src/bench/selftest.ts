import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { promises as fsp } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pTimeout from 'p-timeout'
import { silentLogger } from '../common/log.js'
import type { MdtAttr } from '../protocol/ops.js'
import { Transport } from '../ptlrpc/transport.js'
import { createFront, type FrontTarget } from '../server/front.js'
import { compactJson, defaultName, gitInfo, hostInfo } from './report.js'
import { median } from './timeline.js'

/**
 * `lproxy selftest`, in the spirit of lnet_selftest: what one round trip costs on this
 * machine beneath lproxy, so that RPC and metadata figures can be read against it. A client
 * process sends small requests one after another to a server process on loopback:
 * - tcp: a node:net echo of REQUEST_BYTES and REPLY_BYTES, the socket floor;
 * - http: an mdt_getattr through lproxy's own RPC path, the client's Transport (undici) to a
 *   node's HTTP front, answered at once by a stand-in target: every RPC's cost but the
 *   target's work;
 * each with both processes on one CPU and on two, since a wakeup on another CPU costs more
 * in a VM.
 */
export const REQUEST_BYTES = 300
export const REPLY_BYTES = 200
const TARGET = 'selftest-MDT0000'
const ATTR: MdtAttr = { fid: 2, type: 'reg', mode: 0o644, uid: 0, gid: 0, nlink: 1, atime: 0, mtime: 0, ctime: 0, size: 0 }

export type FloorKind = 'tcp' | 'http'
export type Placement = 'one-cpu' | 'two-cpus'

export interface FloorFigure {
  kind: FloorKind
  placement: Placement
  /** Microseconds per round trip, one per repetition. */
  runs_us: number[]
  median_us: number
}

export interface SelftestReport {
  name: string
  date: string
  command: string
  git: Awaited<ReturnType<typeof gitInfo>>
  host: ReturnType<typeof hostInfo>
  settings: { count: number; repeat: number; host: string; request_bytes: number; reply_bytes: number }
  figures: FloorFigure[]
}

export interface SelftestOptions {
  host: string
  port: number
  count: number
  repeat: number
  name?: string
  out: string
  command: string
  /** Whether the processes can be placed on CPUs (taskset), and how many CPUs there are. */
  cpus: number
  taskset: boolean
}

const SELF = fileURLToPath(import.meta.url)

/** Where the two processes run: CPU numbers for taskset, null for the scheduler's choice. */
interface Where {
  placement: Placement
  server: string | null
  client: string | null
}

/** Both placements where the machine allows (taskset and two CPUs), else the scheduler's choice. */
export function placements(cpus: number, taskset: boolean): Where[] {
  if (!taskset) return [{ placement: cpus > 1 ? 'two-cpus' : 'one-cpu', server: null, client: null }]
  const out: Where[] = [{ placement: 'one-cpu', server: '0', client: '0' }]
  if (cpus > 1) out.push({ placement: 'two-cpus', server: '1', client: '0' })
  return out
}

export async function runSelftest(o: SelftestOptions, say: (line: string) => void): Promise<{ report: SelftestReport; file: string }> {
  const date = new Date()
  const figures: FloorFigure[] = []
  for (const kind of ['tcp', 'http'] as const)
    for (const p of placements(o.cpus, o.taskset)) {
      const runs: number[] = []
      for (let i = 0; i < o.repeat; i++) runs.push(await measure(kind, p, o))
      const f: FloorFigure = { kind, placement: p.placement, runs_us: runs, median_us: median(runs)! }
      say(`${kind.padEnd(5)} ${p.placement.padEnd(9)} ${f.median_us.toFixed(0).padStart(5)} us per round trip (runs: ${runs.map((r) => r.toFixed(0)).join(', ')})`)
      figures.push(f)
    }
  const report: SelftestReport = {
    name: o.name ?? defaultName('selftest', date),
    date: date.toISOString(),
    command: o.command,
    git: await gitInfo(),
    host: hostInfo(),
    settings: { count: o.count, repeat: o.repeat, host: o.host, request_bytes: REQUEST_BYTES, reply_bytes: REPLY_BYTES },
    figures,
  }
  await fsp.mkdir(o.out, { recursive: true })
  const file = path.join(o.out, `${report.name}.json`)
  await fsp.writeFile(file, compactJson(report) + '\n')
  return { report, file }
}

/** One repetition: a server process, then a client process that reports microseconds per round trip. */
async function measure(kind: FloorKind, where: Where, o: SelftestOptions): Promise<number> {
  const server = start(where.server, ['serve', kind, o.host, String(o.port)])
  let client: ChildProcess | null = null
  try {
    await pTimeout(firstLine(server, `${kind} server`), { milliseconds: 10_000, message: `${kind} server: not listening on ${o.host}:${o.port} within 10 s` })
    client = start(where.client, ['client', kind, o.host, String(o.port), String(o.count)])
    // Even at a millisecond per round trip: a client that takes longer is stuck.
    const ms = 10_000 + 2 * o.count
    const out = await pTimeout(firstLine(client, `${kind} client`), { milliseconds: ms, message: `${kind} client: no figure within ${ms / 1000} s` })
    const us = Number(out)
    if (!Number.isFinite(us) || us <= 0) throw new Error(`${kind} client: unexpected output '${out}'`)
    return us
  } finally {
    await Promise.all([server, client].map((c) => c && stop(c)))
  }
}

async function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return
  const exited = once(c, 'exit')
  c.kill('SIGKILL')
  await exited
}

function start(cpu: string | null, args: string[]): ChildProcess {
  const argv = [process.execPath, SELF, ...args]
  const [cmd, ...rest] = cpu === null ? argv : ['taskset', '-c', cpu, ...argv]
  return spawn(cmd!, rest, { stdio: ['ignore', 'pipe', 'pipe'] })
}

/** The child's first line of output; its stderr if it exits first. */
function firstLine(child: ChildProcess, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = ''
    let err = ''
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString()
      const nl = out.indexOf('\n')
      if (nl >= 0) resolve(out.slice(0, nl).trim())
    })
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()))
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`${what} exited (${code}) before answering: ${err.trim().split('\n').pop() ?? ''}`)))
  })
}

/** The server side: echo a reply per request, or an lproxy node's front; prints "ready" once listening. */
function serve(kind: FloorKind, host: string, port: number): void {
  const reply = Buffer.alloc(REPLY_BYTES, 0x79)
  const target: FrontTarget = {
    kind: 'mdt',
    handle: async () => ({ http: 200, status: 0, transno: 0, lastCommitted: 0, flags: [], body: { attr: ATTR } }),
  }
  const srv =
    kind === 'tcp'
      ? net.createServer((c) => {
          c.setNoDelay(true)
          c.on('data', () => c.write(reply))
        })
      : createFront(new Map([[TARGET, target]]), silentLogger)
  srv.listen(port, host, () => process.stdout.write('ready\n'))
}

/**
 * The client side: `count` round trips untimed, then `count` timed; prints microseconds per
 * round trip. The RPC path needs thousands before V8 has optimised it (300 left it a third slower).
 */
async function client(kind: FloorKind, host: string, port: number, count: number): Promise<void> {
  const request = Buffer.alloc(REQUEST_BYTES, 0x78)
  let roundTrip: () => Promise<void>
  let close: () => Promise<void>
  if (kind === 'tcp') {
    const sock = net.connect(port, host)
    sock.setNoDelay(true)
    await once(sock, 'connect')
    // Replies are small and never split on loopback; each 'data' answers one request.
    roundTrip = () =>
      new Promise((resolve) => {
        sock.once('data', () => resolve())
        sock.write(request)
      })
    close = async () => void sock.destroy()
  } else {
    const transport = new Transport({ port, connections: 1 })
    const nid = `${host}@tcp`
    let xid = 0
    roundTrip = async () => {
      xid += 1
      // A signal per request, as an import gives each.
      const h = { target: TARGET, op: 'mdt_getattr', client: 'selftest', connCnt: 1, xid, lastXid: xid - 1, flags: [] }
      await transport.send(nid, h, { a: { fid: ATTR.fid } }, undefined, new AbortController().signal)
    }
    close = () => transport.close()
  }
  for (let i = 0; i < count; i++) await roundTrip()
  const t0 = performance.now()
  for (let i = 0; i < count; i++) await roundTrip()
  const us = ((performance.now() - t0) * 1000) / count
  await close()
  process.stdout.write(`${us.toFixed(1)}\n`)
}

if (process.argv[1] === SELF) {
  const [role, kind, host, port, count] = process.argv.slice(2)
  if (role === 'serve') serve(kind as FloorKind, host!, Number(port))
  else
    void client(kind as FloorKind, host!, Number(port), Number(count)).catch((e) => {
      process.stderr.write(`${(e as Error).message}\n`)
      process.exit(1)
    })
}

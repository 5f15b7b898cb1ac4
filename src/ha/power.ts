import { execFile } from 'node:child_process'
import { promises as fsp } from 'node:fs'
import { promisify } from 'node:util'
import { parseNid } from '../protocol/nid.js'
import { cmdline, isNodeProcess, signal, waitGone } from '../cluster/proc.js'

/**
 * The "machine" behind a NID of the embedded cluster, for fencing: the server node processes
 * bound to the NID, and, when the NID is an address of a network namespace other than the
 * init one (a node of `cluster up --netns` or of the Pacemaker lab), every process in that
 * namespace: powering a machine off stops its HA stack too, not only its lproxy node.
 */
const run = promisify(execFile)

/** A SIGKILLed process is gone at once; bounded in case it sits in uninterruptible sleep. */
const KILL_WAIT_MS = 5000
const KILL_ROUNDS = 10

async function pids(): Promise<number[]> {
  return (await fsp.readdir('/proc')).filter((d) => /^\d+$/.test(d)).map(Number)
}

async function netnsOf(pid: number | 'self'): Promise<string | null> {
  return fsp.readlink(`/proc/${pid}/ns/net`).catch(() => null)
}

/** Processes by network namespace (`net:[inode]`). */
async function byNetns(): Promise<Map<string, number[]>> {
  const m = new Map<string, number[]>()
  for (const pid of await pids()) {
    const ns = await netnsOf(pid)
    if (ns) m.set(ns, [...(m.get(ns) ?? []), pid])
  }
  return m
}

async function hasAddress(pid: number, ip: string): Promise<boolean> {
  const r = await run('nsenter', [`--net=/proc/${pid}/ns/net`, 'ip', '-o', '-4', 'addr', 'show'], { timeout: 5000 }).catch(() => null)
  return !!r && r.stdout.split('\n').some((l) => l.includes(` inet ${ip}/`))
}

/** The processes of the namespace that holds `nid`'s address; none when it is ours or init's. */
async function namespaceProcesses(nid: string): Promise<number[]> {
  const ip = parseNid(nid).host
  const skip = new Set([await netnsOf('self'), await netnsOf(1)])
  for (const [ns, members] of await byNetns()) {
    if (skip.has(ns)) continue
    if (await hasAddress(members[0]!, ip)) return members
  }
  return []
}

export async function nodeProcesses(nid: string): Promise<number[]> {
  const out: number[] = []
  for (const pid of await pids()) if (pid !== process.pid && (await isNodeProcess(pid, nid))) out.push(pid)
  return out
}

/** SIGKILL the machine of `nid`; returns the PIDs killed. */
export async function killMachine(nid: string): Promise<number[]> {
  const killed = new Set<number>()
  // A process may fork between a listing and the kill (a monitor of the HA stack): list
  // again, after the last victims are gone, until a listing finds no one.
  for (let round = 0; round < KILL_ROUNDS; round++) {
    const victims = [...new Set([...(await nodeProcesses(nid)), ...(await namespaceProcesses(nid))])].filter((p) => p !== process.pid)
    if (victims.length === 0) return [...killed]
    for (const p of victims) {
      signal(p, 'SIGKILL')
      killed.add(p)
    }
    const left = await waitGone(victims, KILL_WAIT_MS)
    if (left.length) throw new Error(`still running after SIGKILL: ${left.join(', ')}`)
  }
  throw new Error(`${nid}'s processes kept forking through ${KILL_ROUNDS} rounds of SIGKILL`)
}

/** The NIDs that server nodes run on now (the plugs a fence `list` shows). */
export async function runningNids(): Promise<string[]> {
  const out = new Set<string>()
  for (const pid of await pids()) {
    const args = await cmdline(pid)
    const i = args.indexOf('--nid')
    if (i >= 0 && i + 1 < args.length && (await isNodeProcess(pid, args[i + 1]!))) out.add(args[i + 1]!)
  }
  return [...out].sort()
}

import os from 'node:os'
import { promises as fsp } from 'node:fs'
import { parseNid, formatNid } from '../protocol/nid.js'

/**
 * Acting on processes by PID, safely: a recorded PID may have died and been reused, so a
 * PID is only signalled once /proc shows it is still the process we mean.
 */
export type ProcState = 'running' | 'stopped' | 'gone'

/** Zombies count as gone: a killed node reparented to init may linger unreaped for a moment. */
export async function procState(pid: number): Promise<ProcState> {
  const stat = await fsp.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null)
  if (stat === null) return 'gone'
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
  if (state === 'Z' || state === 'X') return 'gone'
  return state === 'T' || state === 't' ? 'stopped' : 'running'
}

/** Kernel start time of a process (clock ticks since boot): with the PID, it names one process. */
export async function startTime(pid: number): Promise<number | undefined> {
  const stat = await fsp.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null)
  if (stat === null) return undefined
  // Fields after "pid (comm)" start at field 3; starttime is field 22.
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19])
}

/** Whether `pid` is still the process that had start time `start` (and is alive). */
export async function isSameProcess(pid: number, start: number | undefined): Promise<boolean> {
  return start !== undefined && (await procState(pid)) !== 'gone' && (await startTime(pid)) === start
}

export async function cmdline(pid: number): Promise<string[]> {
  const raw = await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
  return raw.split('\0').filter((s) => s !== '')
}

/** Whether `pid` is an lproxy server node bound to `nid` (spawned, or `start -f`). */
export async function isNodeProcess(pid: number, nid: string): Promise<boolean> {
  if (!pid || (await procState(pid)) === 'gone') return false
  const args = await cmdline(pid)
  const i = args.indexOf('--nid')
  if (i < 0 || i + 1 >= args.length) return false
  try {
    return formatNid(parseNid(args[i + 1]!)) === nid
  } catch {
    return false
  }
}

/** The exit status a shell reports for a process ended by `sig` (130 for SIGINT), for a command stopped by one. */
export function signalExitCode(sig: NodeJS.Signals): number {
  return 128 + os.constants.signals[sig]
}

/** Signal a PID; a PID that is already gone is not an error. */
export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e
  }
}

/** Wait until every PID is gone; returns those still there after `ms`. */
export async function waitGone(pids: number[], ms: number): Promise<number[]> {
  const end = Date.now() + ms
  for (;;) {
    const left: number[] = []
    for (const p of pids) if ((await procState(p)) !== 'gone') left.push(p)
    if (left.length === 0 || Date.now() >= end) return left
    await sleep(50)
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

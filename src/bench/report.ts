import { execFile } from 'node:child_process'
import { promises as fsp, readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { FailoverSpec } from './failover.js'
import type { Workload } from './jobs.js'
import type { RunResult } from './run.js'
import { chart, panelsOf } from './svg.js'

/**
 * The record of a bench: settings, conditions (commit, load), every run's figures and
 * timeline, written as bench/out/<name>.json with its chart <name>.svg.
 */
export const REPO = fileURLToPath(new URL('../..', import.meta.url))
export const DEFAULT_OUT = path.join(REPO, 'bench', 'out')

export interface BenchReport {
  name: string
  date: string
  command: string
  git: { commit: string; dirty: boolean } | null
  host: { cpus: number; mem_gib: number; kernel: string; node: string; loadavg_start: number[]; loadavg_end: number[]; idle: IdleInfo }
  settings: { tool: 'native' | 'fio'; workload: Workload; stripe_count: number; cluster_params: Record<string, string>; /** Signed RPCs (a shared key) and mutual TLS on the embedded cluster. */ keyed: boolean; tls: boolean; failover: FailoverSpec | null }
  runs: RunResult[]
}

export async function gitInfo(): Promise<BenchReport['git']> {
  const git = (args: string[]) => promisify(execFile)('git', args, { cwd: REPO }).then((r) => r.stdout.trim())
  try {
    return { commit: await git(['rev-parse', 'HEAD']), dirty: (await git(['status', '--porcelain', '--untracked-files=no'])) !== '' }
  } catch {
    return null
  }
}

/**
 * How an idle CPU here wakes: the cpuidle driver, and in a VM guest haltpoll's polling window
 * (0: every idle CPU halts, and waking it costs an exit to the host). A small RPC or FUSE call
 * is mostly wake-ups, so figures taken under different settings do not compare.
 */
export interface IdleInfo {
  cpuidle_driver: string | null
  guest_halt_poll_ns: number | null
}

function sysText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8').trim()
  } catch {
    return null
  }
}

export function idleInfo(): IdleInfo {
  const poll = sysText('/sys/module/haltpoll/parameters/guest_halt_poll_ns')
  return { cpuidle_driver: sysText('/sys/devices/system/cpu/cpuidle/current_driver'), guest_halt_poll_ns: poll === null ? null : Number(poll) }
}

export function hostInfo(): Omit<BenchReport['host'], 'loadavg_end'> {
  return { cpus: os.cpus().length, mem_gib: Math.round(os.totalmem() / 2 ** 30), kernel: os.release(), node: process.version, loadavg_start: os.loadavg(), idle: idleInfo() }
}

/** bench-20250101-120000, failover-hard-..., compare-...: what it was, and when. */
export function defaultName(kind: string, at: Date): string {
  const p = (n: number) => String(n).padStart(2, '0')
  return `${kind}-${at.getFullYear()}${p(at.getMonth() + 1)}${p(at.getDate())}-${p(at.getHours())}${p(at.getMinutes())}${p(at.getSeconds())}`
}

/** Indented JSON whose arrays of numbers (the timelines) stay on one line each. */
export function compactJson(v: unknown): string {
  return JSON.stringify(v, null, 1).replace(/\[[-\d.e+,\s]+\]/g, (a) => a.replace(/\s+/g, ''))
}

export async function writeReport(r: BenchReport, outDir: string): Promise<{ json: string; svg: string }> {
  await fsp.mkdir(outDir, { recursive: true })
  const json = path.join(outDir, `${r.name}.json`)
  const svg = path.join(outDir, `${r.name}.svg`)
  await fsp.writeFile(json, compactJson(r) + '\n')
  await fsp.writeFile(svg, chart(panelsOf(r.runs)))
  return { json, svg }
}

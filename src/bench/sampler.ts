import { promises as fsp } from 'node:fs'
import type { BenchFs, ImportState } from './fs/types.js'

/**
 * Every 250 ms: the state of each lproxy import (from the mount's control socket) and the
 * client's resident size, for the live display and the record (which keeps the RSS series
 * and the imports' state changes).
 */
export const SAMPLE_MS = 250

export interface Samples {
  /** [ms, MiB] pairs. */
  rss_mib: Array<[number, number]>
  /** Each change of an import's state (the first sample lists them all). */
  imports: Array<{ ms: number; target: string; state: string }>
}

export class Sampler {
  readonly samples: Samples = { rss_mib: [], imports: [] }
  latest: { imports: ImportState[] | null; rss_mib: number | null } = { imports: null, rss_mib: null }
  private readonly states = new Map<string, string>()
  private timer: NodeJS.Timeout | null = null
  private busy = false

  constructor(
    private readonly fs: BenchFs,
    private readonly t0: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), SAMPLE_MS)
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
  }

  /** Largest RSS sampled within [fromMs, toMs]. */
  rssMax(fromMs: number, toMs: number): number | null {
    const xs = this.samples.rss_mib.filter(([ms]) => ms >= fromMs && ms <= toMs).map(([, mib]) => mib)
    return xs.length ? Math.max(...xs) : null
  }

  private async tick(): Promise<void> {
    // A daemon busy with recovery may answer slowly: never stack probes.
    if (this.busy) return
    this.busy = true
    try {
      const p = await this.fs.probe().catch(() => ({ pid: null, imports: null }))
      const rss = p.pid ? await rssMib(p.pid) : null
      const ms = Date.now() - this.t0
      this.latest = { imports: p.imports, rss_mib: rss }
      if (rss !== null) this.samples.rss_mib.push([ms, rss])
      for (const i of p.imports ?? []) {
        if (this.states.get(i.target) === i.state) continue
        this.states.set(i.target, i.state)
        this.samples.imports.push({ ms, target: i.target, state: i.state })
      }
    } finally {
      this.busy = false
    }
  }
}

async function rssMib(pid: number): Promise<number | null> {
  const status = await fsp.readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status)
  return m ? Math.round(Number(m[1]) / 1024) : null
}

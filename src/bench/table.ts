import { METRICS } from './figures.js'
import type { JobResult } from './result.js'
import type { RunResult } from './run.js'

/** What the harness prints: a line per job as it ends, and the summary of every run. */
const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`
const num = (v: number) => (v >= 100 ? v.toFixed(0) : v.toFixed(1))

export function jobLine(fs: string, j: JobResult): string {
  const name = `${fs} ${j.name}${j.rep ? `#${j.rep + 1}` : ''}`.padEnd(20)
  const what = j.phases
    ? Object.entries(j.phases).map(([k, p]) => `${k} ${num(p.per_s)}/s`).join(', ')
    : `${mib(j.bytes)} in ${j.seconds.toFixed(2)} s: ${num(j.mb_per_s)} MB/s, ${num(j.ops_per_s)} ops/s`
  const extra = [`${j.errors.count} errors`]
  if (j.bad_pages !== undefined) extra.push(`${j.bad_pages} bad pages`)
  if (j.client_rss_max_mib != null) extra.push(`client rss max ${j.client_rss_max_mib} MiB`)
  return `${name} ${what} (${extra.join(', ')})`
}

function cell(r: RunResult, key: string): string {
  const f = r.figures[key]
  if (!f || f.median === null) return '-'
  return f.errors ? `${num(f.median)} (${f.errors} err)` : num(f.median)
}

/** One table, a row per figure, a column per filesystem; peers' cells carry lproxy / peer. */
export function compareTable(runs: RunResult[], repeat: number): string[] {
  const [base] = runs
  if (!base) return []
  const head = ['', 'unit', ...runs.map((r) => r.fs)]
  const rows = METRICS.filter((m) => runs.some((r) => r.figures[m.key])).map((m) => {
    const b = base.figures[m.key]?.median
    return [m.label, m.unit, ...runs.map((r, i) => {
      const v = r.figures[m.key]?.median
      const ratio = i > 0 && b != null && v ? ` (${(b / v).toFixed(2)}x)` : ''
      return cell(r, m.key) + ratio
    })]
  })
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (r: string[]) => r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
  return [line(head), ...rows.map(line), `(x): lproxy's figure divided by that filesystem's; medians of ${repeat} run(s) each`]
}

export function runSummary(r: RunResult): string[] {
  const out = [`${r.fs}: ${r.description}`]
  const v = r.verify
  const scope = r.tool === 'fio' ? " (fio's verify headers; the random writer's file is not checked)" : ''
  const small = r.jobs.filter((j) => j.phases?.verify)
  const smallFiles = small.reduce((a, j) => a + j.phases!.verify!.ops, 0)
  const smallBad = small.reduce((a, j) => a + (j.bad_pages ?? 0), 0)
  const alsoSmall = small.length ? `; ${smallFiles} small files of the metadata mix read back before their unlink, ${smallBad} bad` : ''
  out.push(`  verified: ${v.streams} files, ${mib(v.bytes)}, ${v.bad_pages ?? 0} bad pages, ${v.errors.count} read errors${scope}${alsoSmall}${r.verified ? '' : '  <-- FAILED'}`)
  for (const b of [...(v.first_bad ?? []), ...small.flatMap((j) => j.first_bad ?? [])].slice(0, 5)) out.push(`    mismatch: ${b}`)
  out.push(`  application errors: ${r.app_errors}`)
  for (const j of r.jobs) for (const e of j.errors.first.slice(0, 5)) out.push(`    ${j.name} +${(e.at_ms / 1000).toFixed(2)} s ${e.op}: ${e.error}`)
  if (r.replayed) out.push(`  replayed: ${r.replayed.requests} requests, ${mib(r.replayed.bytes)}`)
  const f = r.failover
  if (f) {
    if (f.error) out.push(`  failover of ${f.what} (${f.mode}): ${f.error}`)
    else {
      out.push(`  failover of ${f.what} (${f.mode}) at +${(f.fault_ms! / 1000).toFixed(2)} s; served again at +${f.served_ms === null ? '?' : (f.served_ms / 1000).toFixed(2)} s`)
      const i = r.impact
      if (!i) out.push('    the fault fell between jobs: no stall or recovery to measure')
      else {
        const stall = `    in ${i.job}: stall ${(i.stall_ms / 1000).toFixed(1)} s (zero-throughput buckets)`
        if (i.pre_median_per_s === null) out.push(`${stall}; no data moved in it before the fault, so no pre-failure median to come back to`)
        else {
          const rec = i.recovered_after_served_ms === null ? 'not within the job' : `${(i.recovered_after_served_ms / 1000).toFixed(2)} s after the partner served`
          out.push(`${stall}, pre-failure median ${num(i.pre_median_per_s)} ${i.unit}, back to it ${rec}`)
        }
      }
    }
  }
  return out
}

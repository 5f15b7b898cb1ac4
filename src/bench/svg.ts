import type { RunResult } from './run.js'

/**
 * The chart: throughput (MB/s per 100 ms bucket) over time, one panel per filesystem, jobs
 * shaded behind the curve, the failure (red), the takeover (green) and the stall marked.
 * Hand-written SVG: no dependency, small, readable in a browser or a text editor.
 */
export interface Panel {
  title: string
  mbps: number[]
  bucketMs: number
  spans: Array<{ label: string; from: number; to: number }>
  marks: Array<{ at: number; label: string; color: string }>
  stall: { from: number; to: number } | null
}

const W = 960
const H = 220
const L = 56
const R = 16
const T = 30
const B = 30

export function panelsOf(runs: RunResult[]): Panel[] {
  return runs.map((r) => {
    const marks: Panel['marks'] = []
    const f = r.failover
    if (f?.fault_ms != null) marks.push({ at: f.fault_ms, label: `${f.what} fails (${f.mode})`, color: '#c62828' })
    if (f?.served_ms != null) marks.push({ at: f.served_ms, label: (f.move?.moved ?? []).map((m) => `${m.target} on ${m.node}`).join(', ') || 'served', color: '#2e7d32' })
    // The stall's parts: the client noticing, the fence, the client's import FULL again.
    for (const x of f?.split ?? []) {
      if (x.lost_ms !== null) marks.push({ at: x.lost_ms, label: `client lost ${x.target}`, color: '#ef6c00' })
      if (x.fenced_ms !== null) marks.push({ at: x.fenced_ms, label: `${f!.what} fenced`, color: '#6a1b9a' })
      if (x.restored_ms !== null) marks.push({ at: x.restored_ms, label: `client back on ${x.target}`, color: '#1565c0' })
    }
    const i = r.impact
    const jobs = [...r.jobs, r.verify]
    return {
      title: `${r.fs}: ${r.description}`,
      mbps: r.timeline.bytes.map((b) => (b * 1000) / r.timeline.bucket_ms / 1e6),
      bucketMs: r.timeline.bucket_ms,
      spans: jobs.map((j) => ({ label: `${j.name}${j.rep ? `#${j.rep + 1}` : ''}`, from: j.start_ms, to: j.end_ms })),
      marks,
      stall: i && i.stall_from_ms !== null && i.stall_to_ms !== null ? { from: i.stall_from_ms, to: i.stall_to_ms } : null,
    }
  })
}

/** 1, 2 or 5 times a power of ten, giving about `n` steps over `range`. */
export function niceStep(range: number, n: number): number {
  const raw = range / n
  const p = 10 ** Math.floor(Math.log10(raw || 1))
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
const r1 = (v: number) => Math.round(v * 10) / 10

function panel(p: Panel, top: number): string {
  const endMs = Math.max(p.mbps.length * p.bucketMs, ...p.spans.map((s) => s.to), ...p.marks.map((m) => m.at), 1000)
  const yStep = niceStep(Math.max(...p.mbps, 1), 4)
  const yMax = Math.ceil(Math.max(...p.mbps, 1) / yStep) * yStep
  const x = (ms: number) => r1(L + ((W - L - R) * ms) / endMs)
  const y = (v: number) => r1(top + T + (H - T - B) * (1 - v / yMax))
  const out: string[] = [`<text x="${L}" y="${top + 16}" class="title">${esc(p.title.length > 125 ? `${p.title.slice(0, 124)}…` : p.title)}</text>`]
  p.spans.forEach((s, i) => {
    out.push(`<rect x="${x(s.from)}" y="${top + T}" width="${r1(x(s.to) - x(s.from))}" height="${H - T - B}" fill="${i % 2 ? '#eef3f8' : '#f6f6f6'}"/>`)
    // A label wider than its job's span would run into the next one's: the span stays unnamed.
    if (x(s.to) - x(s.from) >= s.label.length * 6) out.push(`<text x="${r1((x(s.from) + x(s.to)) / 2)}" y="${top + T + 11}" class="span">${esc(s.label)}</text>`)
  })
  if (p.stall) out.push(`<rect x="${x(p.stall.from)}" y="${top + T}" width="${r1(x(p.stall.to) - x(p.stall.from))}" height="${H - T - B}" fill="#c62828" fill-opacity="0.12"/>`)
  const label = (v: number) => Number(v.toPrecision(6))
  for (let k = 0; k * yStep <= yMax; k++)
    out.push(`<line x1="${L}" x2="${W - R}" y1="${y(k * yStep)}" y2="${y(k * yStep)}" class="grid"/><text x="${L - 4}" y="${y(k * yStep) + 4}" class="ylab">${label(k * yStep)}</text>`)
  const xStep = niceStep(endMs / 1000, 10) * 1000
  for (let k = 0; k * xStep <= endMs; k++) out.push(`<text x="${x(k * xStep)}" y="${top + H - B + 14}" class="xlab">${label((k * xStep) / 1000)}</text>`)
  out.push(`<text x="${W - R}" y="${top + H - 4}" class="unit">seconds</text><text x="4" y="${top + T - 6}" class="unit0">MB/s</text>`)
  const pts = p.mbps.map((v, i) => `${x((i + 0.5) * p.bucketMs)},${y(v)}`).join(' ')
  out.push(`<polyline points="${pts}" class="curve"/>`)
  p.marks.forEach((m, i) => {
    out.push(`<line x1="${x(m.at)}" x2="${x(m.at)}" y1="${top + T}" y2="${top + H - B}" stroke="${m.color}" stroke-dasharray="4 3"/>`)
    out.push(`<text x="${x(m.at) + 3}" y="${top + T + 24 + 12 * i}" fill="${m.color}" class="mark">${esc(m.label)}</text>`)
  })
  return out.join('\n')
}

export function chart(panels: Panel[]): string {
  const height = H * panels.length + 10
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="sans-serif">`,
    '<style>.title{font-size:12px;font-weight:bold}.span{font-size:10px;fill:#555;text-anchor:middle}.grid{stroke:#ddd}',
    '.ylab{font-size:10px;text-anchor:end}.xlab{font-size:10px;text-anchor:middle}.unit{font-size:10px;text-anchor:end}.unit0{font-size:10px}',
    '.mark{font-size:10px}.curve{fill:none;stroke:#1565c0;stroke-width:1.2}</style>',
    '<rect width="100%" height="100%" fill="white"/>',
    ...panels.map((p, i) => panel(p, i * H)),
    '</svg>',
    '',
  ].join('\n')
}

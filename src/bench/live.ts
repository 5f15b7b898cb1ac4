import type { ImportState } from './fs/types.js'
import type { Progress } from './runner.js'

/**
 * Live progress: on a TTY one line redrawn 5 times a second (throughput over the last
 * second, each import's state, the client's RSS); otherwise one plain line a second.
 */
export class Live {
  private label = ''
  private started = 0
  private history: Array<{ t: number } & Progress> = []
  private timer: NodeJS.Timeout | null = null
  private state: () => { imports: ImportState[] | null; rss_mib: number | null } = () => ({ imports: null, rss_mib: null })

  constructor(private readonly out: NodeJS.WriteStream = process.stdout) {}

  private get tty(): boolean {
    return !!this.out.isTTY
  }

  /** Where the import states and RSS come from while a filesystem runs. */
  watch(state: () => { imports: ImportState[] | null; rss_mib: number | null }): void {
    this.state = state
  }

  begin(label: string): void {
    this.label = label
    this.started = Date.now()
    this.history = [{ t: this.started, bytes: 0, ops: 0 }]
    this.timer = setInterval(() => this.draw(), this.tty ? 200 : 1000)
  }

  update(p: Progress): void {
    const now = Date.now()
    this.history.push({ t: now, ...p })
    while (this.history.length > 2 && this.history[1]!.t < now - 1000) this.history.shift()
  }

  end(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    if (this.tty) this.out.write('\r\x1b[K')
  }

  /** An event line (failover, remount, a job's result), above the live line on a TTY. */
  say(line: string): void {
    this.out.write(this.tty ? `\r\x1b[K${line}\n` : `${line}\n`)
  }

  private draw(): void {
    const a = this.history[0]!
    const b = this.history[this.history.length - 1]!
    const dt = Math.max(b.t - a.t, 1) / 1000
    const { imports, rss_mib } = this.state()
    const parts = [
      this.label.padEnd(12),
      `${((Date.now() - this.started) / 1000).toFixed(1).padStart(6)} s`,
      `${(b.bytes / 2 ** 20).toFixed(0).padStart(6)} MiB`,
      `${((b.bytes - a.bytes) / 1e6 / dt).toFixed(1).padStart(7)} MB/s`,
      `${((b.ops - a.ops) / dt).toFixed(0).padStart(6)} ops/s`,
    ]
    if (imports) parts.push(imports.map((i) => `${i.target.replace(/^[^-]*-/, '')}:${i.state}${i.delayed ? `(${i.delayed} waiting)` : ''}`).join(' '))
    if (rss_mib !== null) parts.push(`rss ${rss_mib} MiB`)
    const line = parts.join('  ')
    this.out.write(this.tty ? `\r\x1b[K${line.slice(0, (this.out.columns ?? 200) - 1)}` : `${line}\n`)
  }
}

import type { Command } from 'commander'
import { DEFAULT_NET, DEFAULT_PORT } from '../cluster/layout.js'
import type { DemoReport } from '../cluster/demo.js'
import { command } from './server.js'
import { numberParser, portParser } from './parse.js'

/** `lproxy demo` (what `npm start` runs). */
export function registerDemoCommand(program: Command): void {
  command(program, 'demo', 'bring up the embedded cluster, copy a real tree across a node failover, verify every byte, tear down')
    .option('--source <dir>', 'tree to copy', '/usr/share/doc')
    .option('--fail <node|target|none>', 'what to fail in the middle of the copy', 'oss1')
    .option('--fail-at <fraction>', 'fail once this fraction of the bytes is copied', numberParser({ min: 0, max: 1, integer: false }), 0.4)
    .option('--net <a.b.c>', 'loopback /24 of the nodes', DEFAULT_NET)
    .option('--port <port>', 'the filesystem-wide port', portParser, DEFAULT_PORT)
    .option('--dir <dir>', 'cluster directory to keep (default: a temporary one, removed)')
    .action(async (o: { source: string; fail: string; failAt: number; net: string; port: number; dir?: string }) => {
      const say = (l: string) => process.stdout.write(l + '\n')
      // Ctrl-C (or a kill) stops the copy and still tears the cluster down: nothing is left running or mounted.
      const stop = new AbortController()
      const onSignal = (sig: NodeJS.Signals) => {
        say(`${sig}: stopping the copy, tearing the cluster down`)
        stop.abort(sig)
      }
      const [{ mib, runDemo }, { signalExitCode }] = await Promise.all([import('../cluster/demo.js'), import('../cluster/proc.js')])
      process.once('SIGINT', onSignal).once('SIGTERM', onSignal)
      let r: DemoReport
      try {
        r = await runDemo({
          source: o.source,
          fail: o.fail === 'none' ? null : o.fail,
          failAt: o.failAt,
          net: o.net,
          port: o.port,
          dir: o.dir,
          say,
          signal: stop.signal,
        })
      } catch (e) {
        if (!stop.signal.aborted) throw e
        process.exitCode = signalExitCode(stop.signal.reason as NodeJS.Signals)
        return
      } finally {
        process.off('SIGINT', onSignal).off('SIGTERM', onSignal)
      }
      const c = r.copy
      say('')
      say(`summary: ${c.files} files, ${mib(c.bytes)} copied in ${(c.ms / 1000).toFixed(1)} s (${(c.bytes / 1e6 / (c.ms / 1000)).toFixed(1)} MB/s)`)
      if (r.failover) {
        const served = r.failover.moved.map((m) => `${m.target} on ${m.node} after ${(m.ms / 1000).toFixed(2)} s`).join(', ')
        say(`  failover:    ${r.failover.node} killed; ${served}`)
      }
      const secs = (ms: number | null) => (ms === null ? '?' : `${(ms / 1000).toFixed(2)} s`)
      for (const s of r.split)
        say(`  ${s.target}:  detection ${secs(s.detectionMs)}, takeover ${secs(s.takeoverMs)} (from the kill), client recovery ${secs(s.recoveryMs)} (from serving)`)
      say(`  application: ${c.errors.length} errors, longest stall ${(c.longestOp.ms / 1000).toFixed(2)} s (${c.longestOp.what})`)
      say(`  replay:      ${r.replayed.requests} requests replayed (${mib(r.replayed.bytes)})`)
      say(`  verified:    ${r.verified.files} files, ${r.verified.bytes} bytes, ${r.verified.mismatches.length} mismatches`)
      for (const e of c.errors.slice(0, 10)) say(`  error: ${e}`)
      for (const m of r.verified.mismatches.slice(0, 10)) say(`  mismatch: ${m}`)
      if (c.errors.length || r.verified.mismatches.length || r.verified.files !== c.files) process.exitCode = 1
    })
}

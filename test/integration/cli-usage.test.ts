import { execFile } from 'node:child_process'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { REPO } from '../helpers/nodes.js'

/**
 * Every command's errors: one `lproxy: ...` line, exit 2 for a command line that makes no
 * sense (commander's parse errors included), 1 for a failure while carrying it out. No server
 * or mount is involved.
 */
function lproxy(args: string[], nodeArgs: string[] = [path.join(REPO, 'bin', 'lproxy.js')]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [...nodeArgs, ...args], { cwd: '/' }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 128) : 0, stdout, stderr }),
    ),
  )
}

const CASES: Array<[string[], number, RegExp]> = [
  [['bogus'], 2, /unknown command 'bogus' \(see 'lproxy --help'\)/],
  [['mount', '/mnt'], 2, /required option '--mgsnode <nids>' not specified \(see 'lproxy mount --help'\)/],
  [['mount', '--mgsnode', '10.0.0.1@tcp', '--port', '0', '/mnt'], 2, /'--port <port>' argument '0' is invalid\. an integer from 1 to 65535/],
  [['mount', '--mgsnode', '10.0.0.1@tcp', '--bogus', '/mnt'], 2, /unknown option '--bogus' \(see 'lproxy mount --help'\)/],
  [['umount'], 2, /missing required argument 'mountpoint'/],
  [['umount', '/nonexistent-h4'], 1, /\/nonexistent-h4 is not mounted/],
  [['setstripe', '-c', '0', '/tmp'], 2, /'-c, --stripe-count <n>' argument '0' is invalid\. -1 \(every OST\) or a count from 1/],
  [['setstripe', '-i', 'x', '/tmp'], 2, /'-i, --stripe-index <ost>' argument 'x' is invalid/],
  [['setstripe', '-S', '3q', '/tmp'], 2, /invalid stripe size '3q'/],
  [['setstripe', '-d', '-c', '2', '/tmp'], 2, /option '-d, --delete' cannot be used with option '-c, --stripe-count <n>'/],
  [['setstripe', '-c', '2', '/tmp'], 1, /\/tmp is not on an lproxy mount/],
  [['getstripe'], 2, /missing required argument 'path' \(see 'lproxy getstripe --help'\)/],
  [['getstripe', '/tmp'], 1, /\/tmp is not on an lproxy mount/],
  [['bench', '--mode', 'gentle'], 2, /'--mode <mode>' argument 'gentle' is invalid\. Allowed choices are hard, soft, hang/],
  [['bench', '--stripe-count', '0'], 2, /'--stripe-count <n>' argument '0' is invalid/],
  [['bench', '--mount', '/tmp', '--failover-at', '1'], 2, /option '--failover-at <s>' cannot be used with option '--mount <mountpoint>'/],
  [['bench', '--compare', '--failover-at', '1'], 2, /option '--failover-at <s>' cannot be used with option '--compare'/],
  [['tunefs'], 2, /missing required argument 'dir' \(see 'lproxy tunefs --help'\)/],
  [['tunefs', '/nonexistent-h4'], 1, /does not hold an lproxy target \(no CONFIG\)/],
  [['start', '/tmp'], 2, /--nid is required/],
]

describe('lproxy errors', () => {
  it.each(CASES)('lproxy %j: one line, exit %i', async (args, code, msg) => {
    const r = await lproxy(args)
    expect(r.stdout).toBe('')
    expect(r.stderr).toMatch(/^lproxy: [^\n]+\n$/)
    expect(r.stderr).toMatch(msg)
    expect(r.code).toBe(code)
  })

  it('keeps the top-level help to short lines (summaries), while a command\'s own help has its whole description', async () => {
    const top = await lproxy(['--help'])
    expect(top.code).toBe(0)
    for (const l of top.stdout.split('\n')) expect(l.length, l).toBeLessThanOrEqual(160)
    expect(top.stdout).toMatch(/^ +selftest \[options\] +this machine's RPC round-trip and metadata floor/m)
    expect((await lproxy(['selftest', '--help'])).stdout.replace(/\s+/g, ' ')).toMatch(/the fastest any lproxy mount can create, stat and unlink here/)
  })
})

/**
 * Every module a process loads costs start-up CPU (about 0.3 s of a command's 0.75 s went on
 * code it never ran): Pacemaker runs `lproxy target-status` at each monitor, and each node and
 * mount daemon starts with the whole server or client. The ESM loader, hooked, names what loads.
 */
describe('what a process loads at start-up', () => {
  const HOOK = `data:text/javascript,export async function load(u, c, next) { if (u.startsWith('file:')) process.stderr.write('LOADED ' + u + '\\n'); return next(u, c) }`
  const REGISTER = `data:text/javascript,import { register } from 'node:module'; register(${JSON.stringify(HOOK)})`
  const loaded = async (entry: string, args: string[]) =>
    (await lproxy(args, ['--import', REGISTER, path.join(REPO, entry)])).stderr.split('\n').flatMap((l) => (l.startsWith('LOADED ') ? [l.slice(7)] : []))

  it('a command loads only what its own work needs: not the server, the client stack, the bench, undici nor prom-client', async () => {
    const mods = await loaded('bin/lproxy.js', ['target-status', '/nonexistent-h4'])
    expect(mods).toContain(`file://${REPO}/dist/ha/status.js`)
    for (const heavy of ['/node_modules/undici/', '/node_modules/prom-client/', '/node_modules/pino-pretty/', '/dist/server/node.js', '/dist/ptlrpc/', '/dist/llite/', '/dist/bench/bench.js', '/dist/cluster/up.js'])
      expect(mods.filter((m) => m.includes(heavy))).toEqual([])
  })

  it('a server node and a mount daemon load neither undici (an @http NID loads it) nor prom-client (--metrics does)', async () => {
    for (const entry of ['dist/server/main.js', 'dist/client/daemon.js']) {
      const mods = await loaded(entry, ['--bogus'])
      expect(mods.filter((m) => m.includes('/dist/ptlrpc/')).length, entry).toBeGreaterThan(3)
      expect(mods.filter((m) => /\/node_modules\/(undici|prom-client|pino-pretty)\//.test(m)), entry).toEqual([])
    }
  })
})

import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { once } from 'node:events'
import { expect, test } from 'vitest'
import { workspace, type Workspace } from '../helpers/cluster.js'
import { noInternalErrors } from '../helpers/log.js'
import { pollUntil } from '../helpers/poll.js'

/**
 * `npm start`'s job, `lproxy demo`, on a small tree: the embedded cluster up, the tree copied
 * by the application thread while oss1 is killed and oss2 takes ost1 over, every byte read
 * back and compared, the cluster torn down, nothing left running.
 */
function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
  } catch {
    return '' // gone meanwhile
  }
}

/** A tree of 161 files (8 MiB), 16 directories and 8 symlinks; returns the number of files. */
function makeTree(src: string): number {
  let files = 0
  for (let d = 0; d < 8; d++) {
    mkdirSync(path.join(src, `d${d}`, 'sub'), { recursive: true })
    for (let f = 0; f < 20; f++, files++) writeFileSync(path.join(src, `d${d}`, f % 2 ? 'sub' : '', `f${f}`), Buffer.alloc(1000 + 997 * f, d * 31 + f))
    symlinkSync(`../d${(d + 1) % 8}/f0`, path.join(src, `d${d}`, 'up'))
  }
  // Several MiB in one file: the failure lands in the middle of the copy's bytes.
  writeFileSync(path.join(src, 'big'), Buffer.alloc(6 * 2 ** 20 + 123, 7))
  return files + 1
}

/** `lproxy demo` on a small tree in a fresh workspace, running: its output so far, and its exit code once it ends. */
function startDemo(args: string[]): { ws: Workspace; output: () => string; interrupt: () => Promise<number | null> } {
  const ws = workspace('lproxy-demotest-')
  const src = path.join(ws.dir, 'src')
  makeTree(src)
  const demo = ws.spawnCli(['demo', '--source', src, '--dir', path.join(ws.dir, 'cluster'), ...args])
  let out = ''
  demo.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  demo.stderr!.on('data', (d: Buffer) => (out += d.toString()))
  const exit = once(demo, 'exit')
  return {
    ws,
    output: () => out,
    interrupt: async () => {
      demo.kill('SIGINT')
      return (await exit)[0] as number | null
    },
  }
}

test('lproxy demo copies a tree across a failover of oss1 and verifies every byte', async () => {
  const ws = workspace('lproxy-demotest-')
  const src = path.join(ws.dir, 'src')
  const files = makeTree(src)
  const cluster = path.join(ws.dir, 'cluster')
  const r = await ws.cli(['demo', '--source', src, '--dir', cluster, '--net', '127.0.139', '--port', '26300', '--fail', 'oss1', '--fail-at', '0.3'], 240_000)
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0)
  expect(r.stdout).toMatch(/failing oss1 \(power-off, then its partner takes over\)/)
  expect(r.stdout).toMatch(/failover: {4}oss1 killed; ost1 on oss2 after/)
  expect(r.stdout).toContain(`copied ${files} files, 16 directories, 8 symlinks`)
  expect(r.stdout).toContain('application: 0 errors')
  expect(r.stdout).toMatch(new RegExp(`verified: {4}${files} files, ${6 * 2 ** 20 + 123 + 8 * (20 * 1000 + 997 * 190)} bytes, 0 mismatches`))
  expect(existsSync(path.join(cluster, 'logs', 'client.log'))).toBe(true)
  noInternalErrors(path.join(cluster, 'logs'))
  expect(ws.processes()).toEqual([])
  expect(ws.mounts()).toEqual([])
}, 300_000)

test('Ctrl-C stops the demo and tears its cluster down, even with the copy blocked on servers that are gone', async () => {
  const { ws, output, interrupt } = startDemo(['--net', '127.0.144', '--port', '26310', '--fail', 'none'])
  await pollUntil('the copy started', () => output().includes('copying'), 60_000)
  // Every server node dies for good: in failover mode the application's I/O waits for them forever.
  const servers = ws.processes().filter((p) => cmdline(p).includes('dist/server/main.js'))
  expect(servers).toHaveLength(3)
  for (const p of servers) process.kill(p, 'SIGKILL')
  expect(await interrupt(), output()).toBe(130)
  expect(output()).toContain('SIGINT: stopping the copy, tearing the cluster down')
  expect(output()).toMatch(/cluster down\n/)
  expect(output()).not.toContain('summary')
  expect(ws.processes()).toEqual([])
  expect(ws.mounts()).toEqual([])
}, 180_000)

test('Ctrl-C while the cluster comes up: the bring-up ends first, then everything is torn down', async () => {
  const { ws, output, interrupt } = startDemo(['--net', '127.0.148', '--port', '26320'])
  // The first server node runs: the bring-up is under way.
  await pollUntil('a node of the cluster started', () => ws.processes().some((p) => cmdline(p).includes('dist/server/main.js')), 60_000)
  expect(await interrupt(), output()).toBe(130)
  expect(output()).toMatch(/^SIGINT: stopping the copy, tearing the cluster down\n/)
  expect(output()).not.toContain('copying')
  expect(ws.processes()).toEqual([])
  expect(ws.mounts()).toEqual([])
}, 180_000)

import { readFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { startCluster, type ClusterHandle } from '../helpers/cluster.js'
import { importOf } from '../helpers/ctl.js'
import { pollUntil } from '../helpers/poll.js'
import { sh } from '../helpers/sh.js'

/**
 * The client admin's views (SEMANTICS 10): dl, get_param / set_param, df, status, all through
 * the mount daemon's control socket, which the commands find by themselves.
 */
let c: ClusterHandle
let mnt: string
let id: string
const cli = path.resolve('bin/lproxy.js')
const env = () => ({ ...process.env, LPROXY_RUN_DIR: c.ws.runDir })
/** Run from inside the mount: the command finds its daemon from the working directory. */
const lp = (args: string) => sh(`cd "${mnt}" && node "${cli}" ${args}`, { env: env() })

/** get_param's output: `name=value` lines, or `name=` followed by a YAML block. */
function blocks(out: string): Record<string, string> {
  const res: Record<string, string> = {}
  let name = ''
  for (const line of out.split('\n')) {
    const m = /^([a-z]+\.\S+?|timeout)=(.*)$/.exec(line)
    if (m) res[(name = m[1]!)] = m[2]!
    else if (name) res[name] += line + '\n'
  }
  return res
}

beforeAll(async () => {
  c = await startCluster({ net: '127.0.50', port: 25000, timeout: 10, commitInterval: 1, mmpInterval: 0.2 })
  mnt = c.mountpoint!
  await sh(`mkdir "${mnt}/on1" && node "${cli}" setstripe -c 1 -i 1 "${mnt}/on1" && head -c 3000000 /dev/urandom > "${mnt}/on1/f" && sync "${mnt}/on1/f" && cat "${mnt}/on1/f" > /dev/null`, { env: env() })
  id = JSON.parse(await c.ws.ok(['status', '--json'])).client.slice(0, 8)
})

afterAll(async () => {
  await c.down()
})

describe('dl', () => {
  it("lists the mount's devices as lctl dl does, found from the working directory or as the only mount", async () => {
    const uuid = JSON.parse(await lp('status --json')).client as string
    const out = await lp('dl')
    expect(out.split('\n').filter(Boolean).map((l) => /^( {2}\d) (UP|IN) (mgc|lov|mdc|osc) (\S+) (\S+) (\d+)$/.exec(l)?.slice(1, 6))).toEqual([
      ['  0', 'UP', 'mgc', `MGC${c.nids.mds1}`, uuid],
      ['  1', 'UP', 'lov', `spfs-clilov-${id}`, uuid],
      ['  2', 'UP', 'mdc', `spfs-MDT0000-mdc-${id}`, uuid],
      ['  3', 'UP', 'osc', `spfs-OST0001-osc-${id}`, uuid],
      ['  4', 'UP', 'osc', `spfs-OST0002-osc-${id}`, uuid],
    ])
    // From outside any mount, the run directory's only mount; --mount names one.
    expect(await c.ws.ok(['dl'])).toBe(out)
    expect(JSON.parse(await c.ws.ok(['dl', '--json', '--mount', mnt]))[4]).toMatchObject({ index: 4, status: 'UP', type: 'osc', name: `spfs-OST0002-osc-${id}` })
    const bad = await c.ws.cli(['dl', '--mount', c.ws.dir])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/is not an lproxy mount/)
  })
})

describe('get_param / set_param', () => {
  it('prints import blocks that parse back as YAML', async () => {
    const b = blocks(await lp(`get_param 'osc.*.import' 'mdc.*.import' 'mgc.*.import'`))
    expect(Object.keys(b)).toEqual([
      `osc.spfs-OST0001-osc-${id}.import`,
      `osc.spfs-OST0002-osc-${id}.import`,
      `mdc.spfs-MDT0000-mdc-${id}.import`,
      `mgc.MGC${c.nids.mds1}.import`,
    ])
    const ost1 = parse(b[`osc.spfs-OST0001-osc-${id}.import`]!).import
    expect(ost1).toMatchObject({
      name: `spfs-OST0001-osc-${id}`,
      target: 'spfs-OST0001_UUID',
      state: 'FULL',
      import_flags: ['replayable', 'pingable'],
      connection: { failover_nids: [c.nids.oss1, c.nids.oss2], current_connection: c.nids.oss1, generation: 0, 'in-progress_invalidations': 0 },
      rpcs: { inflight: 0, unregistering: 0, timeouts: 0 },
    })
    expect(ost1.connect_flags).toContain('imp_recov')
    expect(ost1.rpcs.avg_waittime).toMatch(/^\d+ usec$/)
    expect(ost1.transactions.peer_committed).toBeGreaterThan(0)
    expect(ost1.write_data_averages.bytes_per_rpc).toBeGreaterThan(0)
    expect(ost1.read_data_averages.bytes_per_rpc).toBeGreaterThan(0)
    expect(parse(b[`mdc.spfs-MDT0000-mdc-${id}.import`]!).import.connection.failover_nids).toEqual([c.nids.mds1, c.nids.mds2])
    const st = parse(blocks(await lp(`get_param 'osc.*OST0002*.state'`))[`osc.spfs-OST0002-osc-${id}.state`]!)
    expect(st.current_state).toBe('FULL')
    expect(st.state_history.map((h: [number, string]) => h[1])).toEqual(['NEW', 'CONNECTING', 'FULL'])
    expect(Math.abs(st.state_history[2][0] * 1000 - Date.now())).toBeLessThan(300_000)
    expect(parse(blocks(await lp(`get_param 'osc.*OST0001*.timeouts'`))[`osc.spfs-OST0001-osc-${id}.timeouts`]!)).toMatchObject({ timeouts: 0, request_deadline: '10 sec' })
  })

  it("shows on the MDS its OSP devices, as lctl's osp.*: the MDT's import of each OST, FULL and active", async () => {
    const b = blocks(await lp(`get_param --target "${path.join(c.dir, 'targets', 'mdt0')}" 'osp.*.import' 'osp.*.active' 'osp.*OST0002*.state'`))
    const dev = (ost: number) => `osp.spfs-OST000${ost}-osc-MDT0000`
    expect(Object.keys(b).sort()).toEqual([`${dev(1)}.active`, `${dev(1)}.import`, `${dev(2)}.active`, `${dev(2)}.import`, `${dev(2)}.state`])
    for (const ost of [1, 2]) {
      expect(b[`${dev(ost)}.active`]).toBe('1')
      expect(parse(b[`${dev(ost)}.import`]!).import).toMatchObject({
        name: `spfs-OST000${ost}-osc-MDT0000`,
        target: `spfs-OST000${ost}_UUID`,
        state: 'FULL',
        connection: { failover_nids: [c.nids[`oss${ost}`], c.nids[`oss${3 - ost}`]], current_connection: c.nids[`oss${ost}`] },
      })
    }
    expect(parse(b[`${dev(2)}.state`]!).current_state).toBe('FULL')
  })

  it('globs as lctl does, sets tunables live, refuses what it cannot set', async () => {
    expect(await lp(`get_param 'osc.spfs-OST0002*.active' timeout`)).toBe(`osc.spfs-OST0002-osc-${id}.active=1\ntimeout=10\n`)
    expect(await lp(`get_param -n 'osc.*.max_rpcs_in_flight'`)).toBe('8\n8\n')
    expect(await lp(`get_param -N 'osc.*OST000[2]*.max_dirty_mb'`)).toBe(`osc.spfs-OST0002-osc-${id}.max_dirty_mb\n`)
    expect(await lp(`set_param 'osc.*.max_dirty_mb=1' 'osc.*.max_rpcs_in_flight=2' timeout=12`)).toBe(
      [`osc.spfs-OST0001-osc-${id}.max_dirty_mb=1`, `osc.spfs-OST0002-osc-${id}.max_dirty_mb=1`, `osc.spfs-OST0001-osc-${id}.max_rpcs_in_flight=2`, `osc.spfs-OST0002-osc-${id}.max_rpcs_in_flight=2`, 'timeout=12', ''].join('\n'),
    )
    expect(parse(blocks(await lp(`get_param 'osc.*OST0001*.import'`))[`osc.spfs-OST0001-osc-${id}.import`]!).import.service_estimates.services).toBe('12 sec')
    // A writer larger than the new cache limit streams through it.
    expect(await sh(`head -c 8000000 /dev/zero > "${mnt}/on1/z" && sync "${mnt}/on1/z" && stat -c %s "${mnt}/on1/z"`)).toBe('8000000\n')
    await lp(`set_param 'osc.*.max_dirty_mb=64' 'osc.*.max_rpcs_in_flight=8' timeout=10`)
    const ro = await c.ws.cli(['set_param', `osc.spfs-OST0001-osc-${id}.import=1`])
    expect([ro.code, ro.stderr.trim()]).toEqual([1, `lproxy: set_param: osc.spfs-OST0001-osc-${id}.import is read-only`])
    const inval = await c.ws.cli(['set_param', 'osc.*.max_rpcs_in_flight=0'])
    expect(inval.stderr).toMatch(/max_rpcs_in_flight: '0' is not an integer from 1 to 256/)
    const none = await c.ws.cli(['get_param', 'llite.*.nosuch'])
    expect([none.code, none.stderr.trim()]).toEqual([1, `lproxy: get_param: no parameter matches 'llite.*.nosuch'`])
    // active is deactivate/activate.
    await lp(`set_param 'osc.*OST0002*.active=0'`)
    expect(await lp('dl')).toMatch(/^ {2}4 IN osc spfs-OST0002/m)
    await lp(`set_param 'osc.*OST0002*.active=1'`)
    await expect.poll(async () => (await importOf(c.ws.runDir, mnt, 'spfs-OST0002')).state, { timeout: 10_000 }).toBe('FULL')
    expect(JSON.parse(await lp(`get_param --json 'osc.*OST0002*.active'`))).toEqual([{ name: `osc.spfs-OST0002-osc-${id}.active`, value: 1 }])
  })
})

describe('stats', () => {
  const value = async (pattern: string) => {
    const r = JSON.parse(await lp(`get_param --json '${pattern}'`)) as Array<{ name: string; value: Record<string, unknown> }>
    expect(r).toHaveLength(1)
    return r[0]!.value
  }

  it('keeps them as Lustre does: llite.*.stats, osc.*.rpc_stats, mdc.*.md_stats, and the import recovery counters', async () => {
    // The 3 MB file written at setup went through llite and left in write RPCs to OST0001.
    const llite = await value('llite.*.stats')
    expect(llite.snapshot_time).toBeCloseTo(Date.now() / 1000, -2)
    expect(llite.write_bytes).toMatchObject({ unit: 'bytes', sum: expect.any(Number) })
    expect((llite.write_bytes as { sum: number }).sum).toBeGreaterThanOrEqual(3_000_000)
    for (const op of ['open', 'close', 'write', 'create', 'mkdir']) expect(llite[op], op).toMatchObject({ unit: 'usecs', samples: expect.any(Number) })
    const rpc = (await value('osc.*OST0001*.rpc_stats')) as { pages_per_rpc: { write: Record<string, [number, number, number]> }; write_RPCs_in_flight: number }
    const rows = Object.values(rpc.pages_per_rpc.write)
    expect(rows.reduce((n, r) => n + r[0], 0)).toBeGreaterThan(0)
    expect(rows.at(-1)![2]).toBe(100)
    expect(rpc.write_RPCs_in_flight).toBe(0)
    const md = await value('mdc.*.md_stats')
    for (const op of ['create', 'close']) expect((md[op] as { samples: number }).samples, op).toBeGreaterThan(0)
    const imp = (await value('osc.*OST0001*.import')) as { import: { recovery: Record<string, unknown> } }
    expect(imp.import.recovery).toMatchObject({ resends: 0, replayed_requests: 0, stall_time: '0 sec' })
    expect(imp.import.recovery.transitions).toBeGreaterThanOrEqual(2)
  })
})

describe('statahead', () => {
  /** Stat f0..f299 in order, in one process; the kernel forgets its dentries first, so each stat is a LOOKUP. */
  const statAll = async (d: string) => {
    await sh('echo 2 > /proc/sys/vm/drop_caches')
    return sh(`node -e "const fs = require('fs'); const s = []; for (let i = 0; i < 300; i++) s.push(fs.statSync('${d}/f' + i).size); console.log(s.join(','))"`)
  }
  const stats = async () => (JSON.parse(await lp(`get_param --json 'llite.*.statahead_stats'`)) as Array<{ value: { hits: number; batches: number } }>)[0]!.value
  const sizes = Array.from({ length: 300 }, (_, i) => i).join(',') + '\n'

  it('fetches the names after those a process stats in numbered or listing order, many per RPC, and is tuned and counted under llite.*', async () => {
    const d = `${mnt}/sa`
    // On OST0002 only: the df test counts OST0001's objects.
    await sh(`mkdir "${d}" && node "${cli}" setstripe -c 1 -i 2 "${d}" && node -e "const fs = require('fs'); for (let i = 0; i < 300; i++) fs.writeFileSync('${d}/f' + i, Buffer.alloc(i))"`, { env: env() })
    expect(await lp(`get_param 'llite.*.statahead_max' 'llite.*.statahead_batch_max'`)).toBe(`llite.spfs-${id}.statahead_max=128\nllite.spfs-${id}.statahead_batch_max=64\n`)
    const before = await stats()
    expect(await statAll(d)).toBe(sizes)
    const on = await stats()
    expect(on.hits - before.hits).toBeGreaterThan(250)
    // 300 names in batches of 64 (and up to two batches past the end).
    expect(on.batches - before.batches).toBeGreaterThanOrEqual(5)
    expect(on.batches - before.batches).toBeLessThanOrEqual(7)
    await lp(`set_param 'llite.*.statahead_max=0'`)
    expect(await statAll(d)).toBe(sizes)
    expect(await stats()).toEqual(on)
    await lp(`set_param 'llite.*.statahead_max=128'`)
    // Names with no number, looked up in the order the listing gave them: ls -l.
    const l = `${mnt}/sa-listed`
    await sh(`mkdir "${l}" && node "${cli}" setstripe -c 1 -i 2 "${l}" && node -e "const fs = require('fs'); for (let i = 0; i < 200; i++) fs.writeFileSync('${l}/n' + ((i * 7919) % 1009).toString(36) + 'x', Buffer.alloc(i))"`, { env: env() })
    await sh('echo 2 > /proc/sys/vm/drop_caches')
    const listed = (await sh(`ls -l "${l}"`)).split('\n').filter((line) => /^-rw/.test(line))
    expect(listed).toHaveLength(200)
    // Sizes as written (0..199 bytes), though most came from batches.
    expect(listed.reduce((sum, line) => sum + Number(line.split(/ +/)[4]), 0)).toBe((199 * 200) / 2)
    expect((await stats()).hits - on.hits).toBeGreaterThan(150)
    const bad = await c.ws.cli(['set_param', 'llite.*.statahead_batch_max=0'])
    expect([bad.code, bad.stderr.trim()]).toEqual([1, `lproxy: statahead_batch_max: '0' is not an integer from 1 to 256`])
  })
})

describe('read-ahead budget', () => {
  /** Opens f1..f6 at once, reads 3 MiB of each in turns (128 KiB reads), checks the bytes, asks read_ahead_stats before closing them. */
  const readAll = `
    const fs = require("fs"); const { execFileSync } = require("child_process");
    const [dir, cli] = process.argv.slice(1);
    const fds = [1, 2, 3, 4, 5, 6].map((i) => fs.openSync(dir + "/f" + i, "r"));
    const buf = Buffer.alloc(128 << 10); let bad = 0;
    for (let off = 0; off < 3 << 20; off += buf.length) fds.forEach((fd, i) => {
      const n = fs.readSync(fd, buf, 0, buf.length, off);
      for (let k = 0; k < buf.length; k += 4096) if (n !== buf.length || buf[k] !== ((off + k) / 4096 + i + 1) % 251 || buf[k + 4095] !== buf[k]) bad++;
    });
    const held = JSON.parse(execFileSync(process.execPath, [cli, "get_param", "--json", "llite.*.read_ahead_stats"], { cwd: dir }))[0].value;
    fds.forEach((fd) => fs.closeSync(fd));
    console.log(JSON.stringify({ bad, ...held }));`
  const stats = async () => (JSON.parse(await lp(`get_param --json 'llite.*.read_ahead_stats'`)) as Array<{ value: { held_bytes: number } }>)[0]!.value

  it('holds at most llite.*.max_read_ahead_mb for all the files being read, and nothing once they are closed', async () => {
    const d = `${mnt}/ra`
    // Page p of file i holds (p + i) % 251: a page from elsewhere shows.
    const write = `const fs = require("fs"); for (let i = 1; i <= 6; i++) { const b = Buffer.alloc(6 << 20); for (let p = 0; p < b.length / 4096; p++) b.fill((p + i) % 251, p * 4096, (p + 1) * 4096); fs.writeFileSync("${d}/f" + i, b) }`
    await sh(`mkdir "${d}" && node "${cli}" setstripe -c 1 -i 2 "${d}" && node -e '${write}'`, { env: env() })
    const max = Number(await lp(`get_param -n 'llite.*.max_read_ahead_mb'`))
    expect(max).toBeGreaterThan(4)
    await lp(`set_param 'llite.*.max_read_ahead_mb=4'`)
    try {
      await sh('echo 1 > /proc/sys/vm/drop_caches')
      const got = JSON.parse(await sh(`node -e '${readAll}' "${d}" "${cli}"`, { env: env() })) as { bad: number; held_bytes: number; 'hit max r-a issue': number }
      expect(got.bad).toBe(0)
      // Six sequential readers, each window up to max_read_ahead_per_file_mb (32): 4 MiB held at most.
      expect(got.held_bytes).toBeLessThanOrEqual(4 << 20)
      expect(got['hit max r-a issue']).toBeGreaterThan(0)
      await pollUntil('the closed files gave their read-ahead back', async () => (await stats()).held_bytes === 0)
    } finally {
      await lp(`set_param 'llite.*.max_read_ahead_mb=${max}'`)
    }
    const bad = await c.ws.cli(['set_param', 'llite.*.max_read_ahead_mb=-1'])
    expect([bad.code, bad.stderr.trim()]).toEqual([1, `lproxy: max_read_ahead_mb: '-1' is not an integer from 0 to 65536`])
  })
})

describe('df and status', () => {
  it("lays out df as lfs df does and sums the OSTs' space", async () => {
    const lines = (await lp('df')).split('\n')
    expect(lines[0]).toBe('UUID                   1K-blocks        Used   Available Use% Mounted on')
    const rows = lines.slice(1, 4).map((l) => /^(\S+) +(\d+) +(\d+) +(\d+) +(\d+)% (\S+)$/.exec(l)!)
    expect(rows.map((r) => [r[1], r[6]])).toEqual([
      ['spfs-MDT0000_UUID', `${mnt}[MDT:0]`],
      ['spfs-OST0001_UUID', `${mnt}[OST:1]`],
      ['spfs-OST0002_UUID', `${mnt}[OST:2]`],
    ])
    expect(lines[4]).toBe('')
    const sum = /^filesystem_summary: +(\d+) +(\d+) +(\d+) +\d+% (\S+)$/.exec(lines[5]!)!
    expect(sum[4]).toBe(mnt)
    expect(Number(sum[1])).toBe(Number(rows[1]![2]) + Number(rows[2]![2]))
    expect(await lp('df -h')).toMatch(/^UUID {23}bytes {8}Used   Available Use% Mounted on\nspfs-MDT0000_UUID +\d+\.\d[KMGTPE] /)
    const inodes = (await lp('df -i')).split('\n')
    expect(inodes[0]).toBe('UUID                      Inodes       IUsed       IFree IUse% Mounted on')
    // IUsed of an OST is its object count: on1/f and on1/z.
    expect(inodes[2]).toMatch(/^spfs-OST0001_UUID +\d+ +2 +\d+ +\d+% /)
  })

  it("lfsck --mount finds the MDT through the mount's MGS: a filesystem in use has no orphan and no dangling stripe", async () => {
    const r = JSON.parse(await lp(`lfsck --mount "${mnt}" --json`)) as { target: string; files: number; osts: Array<{ ost: number; objects: number; orphans: number; dangling: unknown[]; error?: string }> }
    expect(r.target).toBe('spfs-MDT0000')
    expect(r.files).toBeGreaterThanOrEqual(1)
    expect(r.osts.map((o) => [o.ost, o.orphans, o.dangling.length, o.error])).toEqual([
      [1, 0, 0, undefined],
      [2, 0, 0, undefined],
    ])
    expect(r.osts[0]!.objects).toBeGreaterThanOrEqual(1)
  })

  it('df does not hang on a dead OST; the console says when its connection is lost and restored', async () => {
    await c.fail('oss2', { takeover: false })
    const t0 = Date.now()
    expect(await lp('df')).toMatch(/^spfs-OST0002_UUID {4}: Resource temporarily unavailable$/m)
    expect(Date.now() - t0).toBeLessThan(5000)
    const status = await lp('status')
    expect(status.split('\n')[0]).toMatch(new RegExp(`^spfs on ${mnt}: client [0-9a-f-]{36}, imperative recovery on$`))
    expect(status).toMatch(/^TARGET +STATE +NID +INFLIGHT +DELAYED +KEPT_BYTES +FLAGS$/m)
    expect(status).toMatch(new RegExp(`^spfs-OST0001 +FULL +${c.nids.oss1} +0 +0 +\\d+$`, 'm'))
    expect(status).toMatch(/^spfs-OST0002 +(DISCONN|CONNECTING) /m)
    await c.failback('oss2')
    // The OST's clients: the mount, and the MDT's OSP (connected to every OST from the MDT's start).
    await expect.poll(async () => (await importOf(c.ws.runDir, mnt, 'spfs-OST0002')).state, { timeout: 10_000 }).toBe('FULL')
    const log = readFileSync(path.join(c.dir, 'logs', 'client.log'), 'utf8')
    expect(log).toMatch(/spfs-OST0002: Connection to spfs-OST0002 \(at 127\.0\.50\.12@tcp\) was lost; in progress operations using this service will wait for recovery to complete/)
    expect(log).toMatch(/spfs-OST0002: Connection restored to spfs-OST0002 \(at 127\.0\.50\.12@tcp\)/)
    await expect.poll(() => readFileSync(path.join(c.dir, 'logs', 'oss2.log'), 'utf8'), { timeout: 10_000 }).toMatch(/spfs-OST0002: Recovery over after \d+:\d\d, of 2 clients 2 recovered and 0 were evicted/)
  })
})

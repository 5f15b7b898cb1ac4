/**
 * tunefs on target directories (src/server/target/tunefs.ts): what CONFIG becomes, what the
 * MGS forgets at --writeconf, and what is refused. Serving nodes are the integration test's
 * (test/integration/tunefs.test.ts).
 */
import { promises as fsp } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { formatTarget, readConfig } from '../../src/server/target/config.js'
import { tunefs, type TunefsOptions } from '../../src/server/target/tunefs.js'

const FAST = ['mmp_interval=0.02']
const temps: string[] = []
afterEach(async () => {
  for (const t of temps.splice(0)) await fsp.rm(t, { recursive: true, force: true })
})

const none: Omit<TunefsOptions, 'dir'> = { failnodes: [], servicenodes: [], params: [], eraseParams: false, writeconf: false, dryrun: false }

async function formatted(kind: 'mgs' | 'ost'): Promise<string> {
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-tunefs-'))
  temps.push(tmp)
  const dir = path.join(tmp, kind)
  const common = { dir, fsname: 'spfs', failnodes: ['10.0.0.2@tcp'], params: FAST, reformat: false }
  if (kind === 'mgs') await formatTarget({ ...common, mgs: true, mdt: true, ost: false })
  else await formatTarget({ ...common, mgs: false, mdt: false, ost: true, index: 1, mgsnode: '10.0.0.1@tcp:10.0.0.2@tcp' })
  return dir
}

describe('lproxy tunefs', () => {
  it('adds failover, service and MGS nodes and parameters; --erase-params starts from nothing; --dryrun writes nothing', async () => {
    const dir = await formatted('ost')
    const dry = await tunefs({ ...none, dir, failnodes: ['10.0.0.13@tcp'], dryrun: true })
    expect(dry.after.failnodes).toEqual(['10.0.0.2@tcp', '10.0.0.13@tcp'])
    expect((await readConfig(dir)).failnodes).toEqual(['10.0.0.2@tcp'])
    await tunefs({ ...none, dir, failnodes: ['10.0.0.13@tcp', '10.0.0.2@tcp'], servicenodes: ['10.0.0.11@tcp'], mgsnode: '10.0.0.3@tcp:10.0.0.1@tcp', params: ['sys.timeout=20'] })
    expect(await readConfig(dir)).toMatchObject({
      failnodes: ['10.0.0.2@tcp', '10.0.0.13@tcp'],
      servicenodes: ['10.0.0.11@tcp'],
      mgsnode: '10.0.0.1@tcp:10.0.0.2@tcp:10.0.0.3@tcp',
      params: { 'mmp_interval': '0.02', 'sys.timeout': '20' },
    })
    await tunefs({ ...none, dir, eraseParams: true, mgsnode: '10.0.0.5@tcp', failnodes: ['10.0.0.6@tcp'], params: FAST })
    expect(await readConfig(dir)).toMatchObject({ failnodes: ['10.0.0.6@tcp'], servicenodes: [], mgsnode: '10.0.0.5@tcp', params: { mmp_interval: '0.02' } })
    // The MMP block is left released: the next start need not wait for a holder.
    expect(JSON.parse(await fsp.readFile(path.join(dir, 'mmp'), 'utf8'))).toMatchObject({ state: 'clean' })
  })

  it('refuses what would break the target, and bad NIDs or parameters, changing nothing', async () => {
    const dir = await formatted('ost')
    const before = await fsp.readFile(path.join(dir, 'CONFIG'), 'utf8')
    await expect(tunefs({ ...none, dir, eraseParams: true })).rejects.toThrow(/--erase-params removes the MGS NIDs too: give them again with --mgsnode/)
    await expect(tunefs({ ...none, dir, failnodes: ['10.0.0.2@ib0'] })).rejects.toThrow(/ib0/)
    await expect(tunefs({ ...none, dir, params: ['bogus=1'] })).rejects.toThrow(/unknown parameter 'bogus'/)
    expect(await fsp.readFile(path.join(dir, 'CONFIG'), 'utf8')).toBe(before)
    await expect(tunefs({ ...none, dir: await formatted('mgs'), mgsnode: '10.0.0.1@tcp' })).rejects.toThrow(/holds the MGS/)
  })

  it("--writeconf on the MGS's directory forgets every target, keeping the sequence going; the MDT beside it regenerates at its start", async () => {
    const dir = await formatted('mgs')
    await fsp.mkdir(path.join(dir, 'mgs'), { recursive: true })
    const target = { name: 'spfs-OST0001', kind: 'ost', index: 1, nids: ['10.0.0.11@tcp', '10.0.0.12@tcp'], mode: 'failover', active: false, instance: 3 }
    await fsp.writeFile(path.join(dir, 'mgs', 'config.json'), JSON.stringify({ fsname: 'spfs', port: 988, seq: 41, targets: [target] }))
    const r = await tunefs({ ...none, dir, writeconf: true })
    expect(r.forgotten).toBe(1)
    expect(JSON.parse(await fsp.readFile(path.join(dir, 'mgs', 'config.json'), 'utf8'))).toEqual({ fsname: 'spfs', port: 988, seq: 42, targets: [] })
    expect((await readConfig(dir)).writeconf).toBe(true)
  })
})

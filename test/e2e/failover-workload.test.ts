import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCluster, type ClusterHandle } from '../helpers/cluster.js'
import { sh } from '../helpers/sh.js'

/**
 * Applications carry on across a node failure having seen only latency: a writer of a
 * striped file while its OSS dies, a metadata workload while the MDS dies.
 */
const WL = path.resolve('test/workloads')
let c: ClusterHandle
let mnt: string
let local: string

beforeAll(async () => {
  c = await startCluster({ net: '127.0.43', port: 24300, timeout: 10, commitInterval: 1, mmpInterval: 0.2 })
  mnt = c.mountpoint!
  local = await mkdtemp(path.join(os.tmpdir(), 'lproxy-expect-'))
})

afterAll(async () => {
  await rm(local, { recursive: true, force: true })
  await c.down()
})

function tree(dir: string): Promise<string> {
  return sh(`cd "${dir}" && find . -type f -printf '%p %s\\n' | sort && find . -type f -print0 | sort -z | xargs -0 cat | sha256sum`)
}

describe('failover under load', () => {
  it('a writer of a 2-stripe file sees no error while its OSS is killed and its partner takes over', async () => {
    await sh(`mkdir "${mnt}/w" && node bin/lproxy.js setstripe -c 2 -S 256k "${mnt}/w"`, { env: { ...process.env, LPROXY_RUN_DIR: c.ws.runDir } })
    const writer = sh(`python3 "${WL}/writer.py" "${mnt}/w/file" 9`)
    await sh('sleep 2')
    const r = await c.fail('oss1')
    expect(r.moved.map((m) => m.node)).toEqual(['oss2'])
    const [digest, blocks, worst] = (await writer).trim().split(' ')
    expect(Number(blocks)).toBeGreaterThan(20)
    // The application saw a stall, not an error, and every byte it wrote is there.
    expect(Number(worst)).toBeGreaterThan(0.5)
    expect((await sh(`sha256sum < "${mnt}/w/file"`)).split(' ')[0]).toBe(digest)
    await c.failback('oss1')
  })

  it('a create/rename/unlink workload sees no error while the MDS fails over', async () => {
    await sh(`mkdir "${mnt}/m" "${local}/m" && python3 "${WL}/meta.py" "${local}/m" a 400`)
    const work = sh(`python3 "${WL}/meta.py" "${mnt}/m" a 400`)
    await sh('sleep 1.5')
    const r = await c.fail('mdt0')
    expect(r.moved.map((m) => m.node)).toEqual(['mds2'])
    await work
    expect(await tree(`${mnt}/m`)).toBe(await tree(`${local}/m`))
    await c.failback('mds1')
  })
})

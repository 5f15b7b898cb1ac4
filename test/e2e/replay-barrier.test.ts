import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCluster, type ClusterHandle } from '../helpers/cluster.js'
import { sh } from '../helpers/sh.js'

/**
 * Replay-barrier scenarios (Lustre's replay_barrier): the target commits everything, then
 * executes but commits nothing; its node dies; the partner takes over, and the client's
 * replay alone must bring back every effect, exactly once, with the same inode numbers.
 */
let c: ClusterHandle
let mnt: string

beforeAll(async () => {
  c = await startCluster({ net: '127.0.41', port: 24100, timeout: 10, commitInterval: 0.5, mmpInterval: 0.2, recoverySoft: 20 })
  mnt = c.mountpoint!
})

afterAll(async () => {
  await c.down()
})

/** Everything the client can see of a tree: names, inode numbers, types, modes, link counts, sizes, contents. */
function snapshot(dir: string): Promise<string> {
  return sh(`cd "${dir}" && find . -printf '%p %i %y %m %n %s\\n' | sort && find . -type f -print0 | sort -z | xargs -0 -r sha256sum`)
}

async function barrier(target: 'mdt0' | 'ost1'): Promise<void> {
  await c.ws.ok(['barrier', path.join(c.dir, 'targets', target)])
}

describe('replay after a replay barrier', () => {
  it('brings back every MDT change once the MDS fails over', async () => {
    const d = path.join(mnt, 'mdt')
    await sh(`
      mkdir "${d}"; cd "${d}"
      echo victim > victim; echo keep > keep; echo doomed > doomed; echo short > short
      mkdir olddir; echo inner > olddir/inner`)
    await barrier('mdt0')
    // Everything below is executed by the MDT and acknowledged, but never committed.
    await sh(`
      cd "${d}"
      echo created > created
      mkdir newdir; echo contained > newdir/contained
      echo renamed > src; mv src victim
      rm doomed
      chmod 600 keep
      truncate -s 2 short
      mv olddir movedir
      ln keep keeplink; ln -s keep keysym`)
    // An open file written after the barrier, still open across the failover.
    await sh(`exec 3>"${d}/open"; echo first >&3; echo second >&3; exec 3>&-`)
    const before = await snapshot(d)
    const r = await c.fail('mdt0')
    expect(r.moved.map((m) => `${m.target}@${m.node}`)).toEqual(['mdt0@mds2'])
    expect(await snapshot(d)).toBe(before)
    expect(await sh(`cd "${d}" && cat victim created newdir/contained open && ls`)).toBe(
      'renamed\ncreated\ncontained\nfirst\nsecond\ncreated\nkeep\nkeeplink\nkeysym\nmovedir\nnewdir\nopen\nshort\nvictim\n',
    )
    const st = await c.status()
    expect(st.targets.find((t) => t.name === 'mdt0')?.recovery).toBe('COMPLETE')
    await c.failback('mds1')
  })

  it('brings back every OST change once the OSS fails over', async () => {
    const d = path.join(mnt, 'ost')
    await sh(`mkdir "${d}" && node "${path.resolve('bin/lproxy.js')}" setstripe -c 1 -i 1 "${d}"`, { env: { ...process.env, LPROXY_RUN_DIR: c.ws.runDir } })
    await sh(`cd "${d}"; head -c 3000000 /dev/urandom > a; head -c 100000 /dev/urandom > t; sync a t`)
    await barrier('ost1')
    await sh(`
      cd "${d}"
      head -c 1000000 /dev/urandom | dd of=a bs=64k seek=7 conv=notrunc status=none
      truncate -s 1234 t
      printf tail >> t
      head -c 2500000 /dev/urandom > fresh
      sync a t fresh`)
    // fsync under a barrier returns without committing: the data lives only in the client's replay list.
    const before = await snapshot(d)
    const r = await c.fail('ost1')
    expect(r.moved.map((m) => `${m.target}@${m.node}`)).toEqual(['ost1@oss2'])
    expect(await snapshot(d)).toBe(before)
    expect(await sh(`stat -c %s "${d}/t"`)).toBe('1238\n')
    await c.failback('oss1')
  })
})

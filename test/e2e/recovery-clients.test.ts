import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCluster, type ClusterHandle } from '../helpers/cluster.js'
import { sh } from '../helpers/sh.js'

/**
 * Recovery with several clients: both replay in one transno order; a client that died
 * before recovery is waited for until the window ends, then evicted, and the log says so.
 */
const WL = path.resolve('test/workloads')
let c: ClusterHandle
let mnt: string
let mnt2: string
let local: string

async function mountSecond(): Promise<void> {
  await mkdir(mnt2, { recursive: true })
  await c.ws.ok(['mount', '--mgsnode', c.mgsnode, '--port', String(c.port), '-o', 'timeout=10', '--log', path.join(c.dir, 'logs', 'client2.log'), mnt2])
}

beforeAll(async () => {
  c = await startCluster({ net: '127.0.44', port: 24400, timeout: 10, commitInterval: 1, mmpInterval: 0.2, recoverySoft: 6 })
  mnt = c.mountpoint!
  mnt2 = path.join(c.dir, 'mnt2')
  local = await mkdtemp(path.join(os.tmpdir(), 'lproxy-expect-'))
  await mountSecond()
})

afterAll(async () => {
  await rm(local, { recursive: true, force: true })
  await c.ws.cli(['umount', mnt2])
  await c.down()
})

function listing(dir: string): Promise<string> {
  return sh(`cd "${dir}" && find . -type f -printf '%p %s\\n' | sort && find . -type f -print0 | sort -z | xargs -0 cat | sha256sum`)
}

describe('recovery with two clients', () => {
  it('both clients working in one directory replay, and the namespace is what both sequences make', async () => {
    await sh(`mkdir "${mnt}/s" "${local}/s" && python3 "${WL}/meta.py" "${local}/s" a 300 && python3 "${WL}/meta.py" "${local}/s" b 300`)
    const a = sh(`python3 "${WL}/meta.py" "${mnt}/s" a 300`)
    const b = sh(`sleep 0.2; python3 "${WL}/meta.py" "${mnt2}/s" b 300`)
    await sh('sleep 1.5')
    await c.ws.ok(['barrier', path.join(c.dir, 'targets', 'mdt0')])
    await sh('sleep 1')
    await c.fail('mdt0')
    await Promise.all([a, b])
    expect(await listing(`${mnt}/s`)).toBe(await listing(`${local}/s`))
    expect(await listing(`${mnt2}/s`)).toBe(await listing(`${local}/s`))
    await c.failback('mds1')
  })

  it('a client killed before recovery is evicted at the end of the window; the survivor recovers', async () => {
    await sh(`mkdir "${mnt}/k"`)
    await c.ws.ok(['barrier', path.join(c.dir, 'targets', 'mdt0')])
    await sh(`echo survivor > "${mnt}/k/one" && echo doomed > "${mnt2}/k/two"`)
    const daemon = (await c.status()).mount.pid
    const second = Number((await sh(`pgrep -f "client/daemon.js.*--mountpoint ${mnt2}"`)).trim())
    expect(second).toBeGreaterThan(0)
    expect(second).not.toBe(daemon)
    await sh(`kill -9 ${second}; fusermount -uz "${mnt2}"`)
    const t0 = Date.now()
    await c.fail('mdt0')
    // The survivor's next operation waits for recovery, which waits for the dead client.
    expect(await sh(`ls "${mnt}/k"`)).toBe('one\n')
    expect(Date.now() - t0).toBeGreaterThan(5000)
    const log = await readFile(path.join(c.dir, 'logs', 'mds2.log'), 'utf8')
    expect(log).toMatch(/Recovery over after \d+:\d\d, of 2 clients 1 recovered and 1 were evicted/)
    expect(log).toMatch(/evicting client/)
    await c.failback('mds1')
    await mountSecond()
  })
})

describe('two clients in one directory', () => {
  // Client 1 makes each directory and sees every change it makes: it knows which names it lacks,
  // until a failed change or the attribute timeout (1 s) says otherwise.
  it('open(O_CREAT|O_EXCL) of a name the other client made fails with EEXIST', async () => {
    await sh(`mkdir "${mnt}/excl" && echo mine > "${mnt}/excl/mine" && echo theirs > "${mnt2}/excl/theirs"`)
    const excl = `import os, sys
try:
    os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
except FileExistsError:
    print('EEXIST')`
    expect(await sh(`python3 -c "${excl}" "${mnt}/excl/theirs"`)).toBe('EEXIST\n')
    expect(await sh(`cat "${mnt}/excl/theirs"`)).toBe('theirs\n')
  })

  it('open(O_CREAT) of a name the other client made opens that file', async () => {
    await sh(`mkdir "${mnt}/creat" && echo theirs > "${mnt2}/creat/theirs"`)
    await sh(`echo more >> "${mnt}/creat/theirs"`)
    expect(await sh(`cat "${mnt}/creat/theirs"`)).toBe('theirs\nmore\n')
  })

  it('a lookup finds the name the other client made within the attribute timeout', async () => {
    await sh(`mkdir "${mnt}/late" && echo late > "${mnt2}/late/f"`)
    await expect.poll(() => sh(`cat "${mnt}/late/f" 2>/dev/null || true`), { timeout: 3000, interval: 100 }).toBe('late\n')
    expect(await sh(`ls "${mnt}/late"`)).toBe('f\n')
  })
})

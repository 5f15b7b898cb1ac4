import { lstatSync, mkdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { startCluster, type ClusterHandle } from '../helpers/cluster.js'
import { REPO } from '../helpers/nodes.js'
import { sh, shFails } from '../helpers/sh.js'

/**
 * `mount -t lproxy` through mount(8) and an fstab line (util-linux's `-T FILE` reads a test
 * fstab instead of /etc/fstab): mount(8) runs /sbin/mount.lproxy, the mount shows its source
 * in findmnt, and umount(8) writes back and ends the daemon.
 */
const HELPER = '/sbin/mount.lproxy'
const OURS = path.join(REPO, 'bin', 'mount.lproxy.js')
let c: ClusterHandle
let previous: string | null = null
let fstab: string
let mnt: string
let idle: string
let env: NodeJS.ProcessEnv

interface Findmnt {
  filesystems: Array<{ target: string; source: string; fstype: string; options: string }>
}

async function findmnt(dir: string): Promise<Findmnt['filesystems'][0] | undefined> {
  const out = await sh(`findmnt -J -o TARGET,SOURCE,FSTYPE,OPTIONS --mountpoint "${dir}" || true`)
  return out.trim() ? (JSON.parse(out) as Findmnt).filesystems[0] : undefined
}

/** The mount daemon's PID, from its control socket. */
async function daemonPid(): Promise<number> {
  return JSON.parse(await c.ws.ok(['status', '--json', '--mount', mnt])).pid as number
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

beforeAll(async () => {
  // mount(8) looks for helpers in /sbin only: this checkout's helper there for the test, the previous one back after.
  const st = lstatSync(HELPER, { throwIfNoEntry: false })
  if (st && !st.isSymbolicLink()) throw new Error(`${HELPER} is not a link to an lproxy checkout: not replacing it`)
  if (st) previous = readlinkSync(HELPER)
  rmSync(HELPER, { force: true })
  symlinkSync(OURS, HELPER)
  c = await startCluster({ net: '127.0.113', port: 31500, mount: false, timeout: 10, commitInterval: 0.5, mmpInterval: 0.2 })
  mnt = path.join(c.ws.dir, 'mnt')
  idle = path.join(c.ws.dir, 'idle')
  mkdirSync(mnt)
  mkdirSync(idle)
  fstab = path.join(c.ws.dir, 'fstab')
  const src = `${c.mgsnode}:/spfs`
  const common = `port=${c.port},log=${path.join(c.ws.dir, 'client.log')},timeout=10`
  writeFileSync(
    fstab,
    [
      '# lproxy, as an admin writes it',
      `${src}  ${mnt}  lproxy  ${common},noatime,_netdev,nofail,x-systemd.mount-timeout=30,x-systemd.requires=network-online.target  0 0`,
      `${src}  ${idle}  lproxy  ${common},noauto  0 0`,
      '',
    ].join('\n'),
  )
  env = { ...process.env, LPROXY_RUN_DIR: c.ws.runDir }
})

afterAll(async () => {
  for (const d of [mnt, idle]) if (d && (await findmnt(d))) await sh(`umount -l "${d}"`)
  await c?.down()
  rmSync(HELPER, { force: true })
  if (previous) symlinkSync(previous, HELPER)
})

describe('mount -t lproxy', () => {
  it('mounts an fstab line by its directory, shows mgsnode:/fsname in findmnt, and umount ends the daemon after writing back', async () => {
    await sh(`mount -T "${fstab}" "${mnt}"`, { env })
    const m = await findmnt(mnt)
    expect(m).toMatchObject({ target: mnt, source: `${c.mgsnode}:/spfs`, fstype: 'fuse.lproxy' })
    expect(m!.options.split(',')).toContain('noatime')
    const pid = await daemonPid()
    // Written and closed, not synced: umount(8) must write it back before the daemon ends.
    await sh(`head -c 3000000 /dev/urandom > "${c.ws.dir}/data" && cp "${c.ws.dir}/data" "${mnt}/f"`, { env })
    await sh(`umount "${mnt}"`, { env })
    expect(await findmnt(mnt)).toBeUndefined()
    await vi.waitFor(() => expect(alive(pid)).toBe(false), { timeout: 20_000, interval: 50 })

    // mount -a: the auto line only; a second run finds it mounted and leaves it.
    await sh(`mount -a -T "${fstab}"`, { env })
    expect(await findmnt(mnt)).toMatchObject({ source: `${c.mgsnode}:/spfs`, fstype: 'fuse.lproxy' })
    expect(await findmnt(idle)).toBeUndefined()
    await sh(`mount -a -T "${fstab}"`, { env })
    await sh(`cmp "${c.ws.dir}/data" "${mnt}/f"`, { env })
    await sh(`umount "${mnt}"`, { env })
  })

  it('refuses a bad source or an unknown option with mount(8) exit codes, and checks without mounting under -f', async () => {
    const bad = await shFails(`mount -t lproxy nonsense "${idle}"`, { cwd: c.ws.dir })
    expect(bad).toMatch(/mount\.lproxy: invalid source 'nonsense': expected mgsnode\[:mgsnode\]:\/fsname/)
    const opt = await shFails(`mount -t lproxy -o bogus ${c.mgsnode}:/spfs "${idle}"`)
    expect(opt).toMatch(/unknown mount option 'bogus'/)
    expect(await sh(`node "${OURS}" ${c.mgsnode}:/spfs "${idle}" -o bogus || echo "exit $?"`)).toMatch(/^exit 1$/m)
    // -s (sloppy) drops what lproxy does not know; -f mounts nothing.
    await sh(`mount -t lproxy -fsv -o bogus,port=${c.port} ${c.mgsnode}:/spfs "${idle}"`, { env })
    expect(await findmnt(idle)).toBeUndefined()
    // Another filesystem name than the MGS serves: the mount fails (32), nothing is left mounted.
    expect(await sh(`node "${OURS}" ${c.mgsnode}:/other "${idle}" -o port=${c.port} || echo "exit $?"`, { env })).toMatch(/^exit 32$/m)
    expect(await findmnt(idle)).toBeUndefined()
  })
})

import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { alive } from '../../src/client/mount.js'
import { startCluster, type ClusterHandle } from '../helpers/cluster.js'
import { sh, shFails } from '../helpers/sh.js'

/**
 * What the native binding (libfuse3 low-level, native/) brings: one kernel inode per FID,
 * the caller's uid/gid on new files, one time of two set by utimensat, rename flags,
 * interrupts of requests waiting on a dead target, and 1 MiB requests; and the paths of it
 * (directory offsets, unlinked-but-open files) the shared suites do not reach.
 */
const TIMEOUT = 6
let c: ClusterHandle
let mnt: string
let log: string
const cli = path.resolve('bin/lproxy.js')
const env = () => ({ ...process.env, LPROXY_RUN_DIR: c.ws.runDir })

beforeAll(async () => {
  c = await startCluster({ net: '127.0.70', port: 27000, mount: false, timeout: TIMEOUT, commitInterval: 1, mmpInterval: 0.2 })
  mnt = path.join(c.dir, 'mnt')
  log = path.join(c.dir, 'logs', 'native-client.log')
  await sh(`mkdir -p "${mnt}"`)
  await c.ws.ok(['mount', '--mgsnode', c.mgsnode, '--port', String(c.port), '-o', `fuse=native,timeout=${TIMEOUT}`, '--log', log, mnt])
})

afterAll(async () => {
  await c.down()
})

/** A process on the mount, with when it exited. */
function start(cmd: string, args: string[]) {
  const p = spawn(cmd, args, { stdio: 'ignore' })
  const exited = new Promise<number>((resolve) => p.once('exit', () => resolve(Date.now())))
  return { p, exited }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('the native FUSE binding', () => {
  it('has the 4 MiB read-ahead window it set after INIT (INIT lowers the window, so a raise before it would be undone)', async () => {
    const dev = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')).find((f) => f[4] === mnt)![2]
    expect((await readFile(`/sys/class/bdi/${dev}/read_ahead_kb`, 'utf8')).trim()).toBe('4096')
  })

  it('gives hard links one inode whose nlink is right at once after unlinking one', async () => {
    const out = await sh(`cd "${mnt}"; mkdir hl; echo data > hl/a; ln hl/a hl/b; ln hl/b hl/c
      stat -c '%i %h' hl/a hl/b hl/c; rm hl/a; stat -c '%h' hl/b; rm hl/c; stat -c '%h' hl/b; ls -i hl`)
    const [a, b, cc, afterOne, afterTwo, listed] = out.trim().split('\n')
    const ino = a!.split(' ')[0]
    expect([a, b, cc]).toEqual([`${ino} 3`, `${ino} 3`, `${ino} 3`])
    expect([afterOne, afterTwo]).toEqual(['2', '1'])
    expect(listed!.trim()).toBe(`${ino} b`)
  })

  it("lists '.' and '..' with their inode numbers, also after a directory moved", async () => {
    const out = await sh(`cd "${mnt}"; mkdir -p p1/d p2; stat -c %i p1 p1/d p2
      ls -ai p1/d | awk '$2 == "." || $2 == ".." { print $1 }'; mv p1/d p2/d; ls -ai p2/d | awk '$2 == ".." { print $1 }'`)
    const [p1, d, p2, dot, dotdot, moved] = out.trim().split('\n')
    expect([dot, dotdot, moved]).toEqual([d, p1, p2])
  })

  it('keeps an unlinked file readable and writable while it is open, without hidden names', async () => {
    const out = await sh(`cd "${mnt}"; mkdir ul; python3 -c "
import os
fd = os.open('ul/f', os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, b'before')
os.unlink('ul/f')
os.write(fd, b' after')
print(os.fstat(fd).st_nlink, os.pread(fd, 100, 0).decode(), sorted(os.listdir('ul')))
os.close(fd)"`)
    expect(out.trim()).toBe('0 before after []')
  })

  it("gives new files, directories, symlinks and nodes the caller's uid and gid", async () => {
    await sh(`cd "${mnt}"; mkdir pub; chmod 1777 pub
      setpriv --reuid=1000 --regid=1000 --clear-groups sh -c 'echo hi > pub/f; mkdir pub/d; ln -s f pub/l; python3 -c "import os; os.mknod(\\"pub/n\\")"'`)
    expect(await sh(`cd "${mnt}/pub"; stat -c '%n %u %g' f d l n`)).toBe('f 1000 1000\nd 1000 1000\nl 1000 1000\nn 1000 1000\n')
    // And the kernel checks permissions against the caller: not root, not allowed.
    expect(await shFails(`cd "${mnt}"; mkdir priv; chmod 700 priv; setpriv --reuid=1000 --regid=1000 --clear-groups touch priv/x`)).toMatch(/Permission denied/)
    // A FIFO is made like any node (issue 20), and owned by its maker too.
    expect(await sh(`cd "${mnt}"; setpriv --reuid=1000 --regid=1000 --clear-groups mkfifo pub/fifo; stat -c '%F %u %g' pub/fifo`)).toBe('fifo 1000 1000\n')
  })

  it('sets mtime alone and atime alone (utimensat with UTIME_OMIT), so tar keeps mtimes', async () => {
    const out = await sh(`cd "${mnt}"; echo x > t; touch -a -d '2010-01-01 00:00:00 UTC' t; touch -m -d '2001-02-03 04:05:06 UTC' t
      stat -c '%X %Y' t; touch -a -d '2012-01-01 00:00:00 UTC' t; stat -c '%X %Y' t`)
    expect(out.trim().split('\n')).toEqual([`${Date.UTC(2010, 0, 1) / 1000} ${Date.UTC(2001, 1, 3, 4, 5, 6) / 1000}`, `${Date.UTC(2012, 0, 1) / 1000} ${Date.UTC(2001, 1, 3, 4, 5, 6) / 1000}`])
    const tar = await sh(`
      src=$(mktemp -d); trap 'rm -rf "$src"' EXIT
      mkdir -p "$src/tt/sub"; for i in 1 2 3; do echo $i > "$src/tt/f$i"; touch -d "200$i-0$i-0$i 0$i:00:00 UTC" "$src/tt/f$i"; done
      echo deep > "$src/tt/sub/g"; touch -d '1999-12-31 23:59:59 UTC' "$src/tt/sub/g" "$src/tt/sub" "$src/tt"
      tar -C "$src" -cf - tt | tar -C "${mnt}" -xf -
      (cd "$src" && find tt -printf '%p %T@\\n' | sort) > "$src/want"; (cd "${mnt}" && find tt -printf '%p %T@\\n' | sort) > "$src/got"
      diff "$src/want" "$src/got" && wc -l < "$src/got"`)
    expect(tar.trim()).toBe('6')
  })

  it('renames with RENAME_NOREPLACE, refusing to replace, and rejects flags it does not support', async () => {
    // libfuse 2 has no rename2: every flagged rename is EINVAL there, even to a free name.
    const out = await sh(`mkdir "${mnt}/rn"; cd "${mnt}/rn"; echo a > ra; echo b > rb; python3 -c "
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
for src, dst, flags in ((b'ra', b'rc', 1), (b'rc', b'rb', 1), (b'rc', b'rb', 2)):
    r = libc.renameat2(-100, src, -100, dst, flags)
    print(r, os.strerror(ctypes.get_errno()) if r else 'ok')
print(sorted(os.listdir('.')), open('rc').read().strip(), open('rb').read().strip())"`)
    expect(out.trim().split('\n')).toEqual(['0 ok', '-1 File exists', '-1 Invalid argument', "['rb', 'rc'] a b"])
  })

  it('interrupts applications blocked on a dead target: SIGINT, SIGTERM, and SIGKILL end them at once', async () => {
    await sh(`mkdir "${mnt}/on1" && node "${cli}" setstripe -c 1 -i 1 "${mnt}/on1"
      for i in 1 2 3; do head -c 300000 /dev/urandom > "${mnt}/on1/f$i"; done; sync "${mnt}"/on1/*`, { env: env() })
    await c.fail('oss1', { takeover: false })
    // Past the attribute and entry timeouts: the next stat must glimpse the dead OST.
    await sleep(1500)
    const blocked = [start('stat', [`${mnt}/on1/f1`]), start('stat', [`${mnt}/on1/f2`]), start('cat', [`${mnt}/on1/f3`])]
    await sleep(2000)
    expect(blocked.map((b) => b.p.exitCode ?? b.p.signalCode)).toEqual([null, null, null])
    // The rest of the mount is unaffected meanwhile.
    expect(await sh(`ls "${mnt}/on1" | wc -l`)).toBe('3\n')
    const signals = ['SIGINT', 'SIGTERM', 'SIGKILL'] as const
    const t0 = Date.now()
    blocked.forEach((b, i) => b.p.kill(signals[i]))
    const ends = await Promise.all(blocked.map((b) => b.exited))
    for (const t of ends) expect(t - t0).toBeLessThan(2000)
    expect(blocked.map((b) => b.p.signalCode)).toEqual([...signals])
    await c.ws.ok(['start', path.join(c.dir, 'targets', 'ost1'), '--nid', c.nids.oss2!, '--name', 'oss2', '--log', path.join(c.dir, 'logs', 'oss2.log')])
    expect(await sh(`cat "${mnt}"/on1/* | wc -c`)).toBe('900000\n')
    await c.failback('oss1')
  })

  it('writes through a write-only handle past the page cache (a readable handle keeps it), and open readers and maps see them', async () => {
    // Page cache is charged to the writer's memory cgroup: one cgroup per writer, 64 MiB each.
    const cached = async (name: string, access: 'O_WRONLY' | 'O_RDWR') => {
      const cg = `/sys/fs/cgroup/memory/lproxy-native-${process.pid}-${name}`
      await sh(`mkdir "${cg}"`)
      try {
        await sh(`bash -c 'echo $$ > "${cg}/cgroup.procs"; exec python3 -c "
import os
fd = os.open(\\"${mnt}/${name}\\", os.${access} | os.O_CREAT | os.O_TRUNC)
for i in range(64): os.write(fd, bytes([i]) * (1 << 20))
os.close(fd)"'`)
        return Number(/^cache (\d+)$/m.exec(await readFile(`${cg}/memory.stat`, 'utf8'))![1])
      } finally {
        await sh(`rmdir "${cg}"`)
      }
    }
    // Not 0: python's own start-up may read a page or two that was not cached yet.
    expect(await cached('wronly', 'O_WRONLY')).toBeLessThan(2 ** 20)
    expect(await cached('rdwr', 'O_RDWR')).toBeGreaterThanOrEqual(60 * 2 ** 20)
    expect(await sh(`cd "${mnt}"; cmp wronly rdwr && echo same`)).toBe('same\n')

    const out = await sh(`cd "${mnt}"; python3 -c "
import mmap, os
with open('coh', 'wb') as f: f.write(b'A' * 8192)
r = os.open('coh', os.O_RDONLY)
m = mmap.mmap(r, 8192, prot=mmap.PROT_READ)
seen = [os.pread(r, 4, 0), m[:4]]
w = os.open('coh', os.O_WRONLY)
os.pwrite(w, b'BBBB', 0)
seen += [os.pread(r, 4, 0), m[:4]]
os.close(w)
print(b' '.join(seen).decode())"`)
    expect(out.trim()).toBe('AAAA AAAA BBBB BBBB')
  })

  it('carries 1 MiB write and read requests (counted by the daemon, logged at unmount)', async () => {
    await sh(`dd if=/dev/urandom of="${mnt}/mib" bs=1M count=16 conv=fsync status=none; echo 3 > /proc/sys/vm/drop_caches
      dd if="${mnt}/mib" of=/dev/null bs=1M status=none`)
    await c.ws.ok(['umount', mnt])
    const closed = (await readFile(log, 'utf8'))
      .split('\n')
      .filter((l) => l.includes('FUSE session closed'))
      .map((l) => JSON.parse(l) as { largestWrite: number; largestRead: number; interrupts: number })
    expect(closed).toHaveLength(1)
    expect(closed[0]!.largestWrite).toBe(1024 * 1024)
    expect(closed[0]!.largestRead).toBe(1024 * 1024)
    // The two stat processes' requests were answered EINTR (cat's read-ahead is not interruptible: SIGKILL ends its wait).
    expect(closed[0]!.interrupts).toBeGreaterThanOrEqual(2)
  })

  it('exits when unmounted from outside (umount), after writing back, so no daemon is left holding its imports', async () => {
    const log2 = path.join(c.dir, 'logs', 'native-client-2.log')
    await c.ws.ok(['mount', '--mgsnode', c.mgsnode, '--port', String(c.port), '-o', `fuse=native,timeout=${TIMEOUT}`, '--log', log2, mnt])
    const mounted = (await readFile(log2, 'utf8')).split('\n').find((l) => l.includes('"mounted '))
    const pid = (JSON.parse(mounted!) as { pid: number }).pid
    expect(alive(pid)).toBe(true)
    await sh(`seq 1 20000 > "${mnt}/kept"; umount "${mnt}"`)
    await vi.waitFor(() => expect(alive(pid)).toBe(false), { timeout: 10_000, interval: 50 })
    expect(await readFile(log2, 'utf8')).toContain('"msg":"unmounted"')
    await c.ws.ok(['mount', '--mgsnode', c.mgsnode, '--port', String(c.port), '-o', `fuse=native,timeout=${TIMEOUT}`, '--log', log2, mnt])
    expect(await sh(`md5sum < "${mnt}/kept"`)).toBe(await sh('seq 1 20000 | md5sum'))
  })

  it('closes read-only handles without a FLUSH request: only the writer\'s close waits for one (counted by the daemon)', async () => {
    const mnt3 = path.join(c.dir, 'mnt3')
    const log3 = path.join(c.dir, 'logs', 'native-client-3.log')
    await sh(`mkdir -p "${mnt3}"`)
    await c.ws.ok(['mount', '--mgsnode', c.mgsnode, '--port', String(c.port), '-o', `fuse=native,timeout=${TIMEOUT}`, '--log', log3, mnt3])
    try {
      const out = await sh(`cd "${mnt3}"; python3 -c "
import os
fd = os.open('ro', os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b'x' * 5000)
os.close(fd)
got = set()
for i in range(20):
    fd = os.open('ro', os.O_RDONLY)
    got.add(len(os.read(fd, 10000)))
    os.close(fd)
print(sorted(got))"`)
      expect(out.trim()).toBe('[5000]')
    } finally {
      await c.ws.ok(['umount', mnt3])
    }
    const closed = (await readFile(log3, 'utf8')).split('\n').filter((l) => l.includes('FUSE session closed'))
    expect(closed).toHaveLength(1)
    expect((JSON.parse(closed[0]!) as { flushes: number }).flushes).toBe(1)
  })
})

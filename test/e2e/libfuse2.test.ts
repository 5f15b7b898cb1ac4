import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { alive } from '../../src/client/mount.js'
import { startCluster, type ClusterHandle } from '../helpers/cluster.js'
import { sh } from '../helpers/sh.js'

/**
 * The fallback binding (fuse-native, libfuse 2), for machines where lproxy's own cannot load:
 * the same files through it, and a daemon that ends with its mount however it is unmounted.
 */
const TIMEOUT = 6
let c: ClusterHandle
let mnt: string

beforeAll(async () => {
  c = await startCluster({ net: '127.0.47', port: 24700, mount: false, timeout: TIMEOUT, commitInterval: 1, mmpInterval: 0.2 })
  mnt = path.join(c.dir, 'mnt')
  await sh(`mkdir -p "${mnt}"`)
})

afterAll(async () => {
  await c.down()
})

/** Mounts through fuse-native; returns the daemon's pid and log. */
async function mountLibfuse2(name: string): Promise<{ pid: number; log: string }> {
  const log = path.join(c.dir, 'logs', `${name}.log`)
  await c.ws.ok(['mount', '--mgsnode', c.mgsnode, '--port', String(c.port), '-o', `fuse=libfuse2,timeout=${TIMEOUT}`, '--log', log, mnt])
  const mounted = (await readFile(log, 'utf8')).split('\n').find((l) => l.includes('"mounted '))
  expect(await readFile(log, 'utf8')).toContain('FUSE binding: fuse-native (libfuse 2)')
  return { pid: (JSON.parse(mounted!) as { pid: number }).pid, log }
}

const gone = (pid: number) => vi.waitFor(() => expect(alive(pid)).toBe(false), { timeout: 10_000, interval: 50 })

describe('the fuse-native fallback', () => {
  it('serves the namespace and the data, which a remount reads back', async () => {
    const { pid } = await mountLibfuse2('libfuse2-1')
    await sh(`cd "${mnt}"; mkdir -p d/e; echo one > d/a; mv d/a d/e/b; ln d/e/b d/c
      dd if=/dev/urandom of=d/big bs=1M count=16 status=none; md5sum < d/big > sum`)
    expect(await sh(`cd "${mnt}"; ls d d/e; stat -c %h d/c; cat d/e/b`)).toBe('d:\nbig\nc\ne\n\nd/e:\nb\n2\none\n')
    await c.ws.ok(['umount', mnt])
    await gone(pid)
    await mountLibfuse2('libfuse2-2')
    expect(await sh(`cd "${mnt}"; md5sum < d/big`)).toBe(await sh(`cat "${mnt}/sum"`))
    await sh(`cd "${mnt}"; rm -r d sum`)
    await c.ws.ok(['umount', mnt])
  })

  it('exits when unmounted from outside, after writing back; a lazy unmount waits for the last open file', async () => {
    const first = await mountLibfuse2('libfuse2-3')
    await sh(`seq 1 20000 > "${mnt}/kept"; umount "${mnt}"`)
    await gone(first.pid)
    expect(await readFile(first.log, 'utf8')).toContain('the kernel ended the FUSE session')

    const second = await mountLibfuse2('libfuse2-4')
    // The file held open across `umount -l` is still served; the daemon goes after its close.
    const out = await sh(`python3 -c "
import os, subprocess, sys, time
fd = os.open(sys.argv[1] + '/kept', os.O_RDONLY)
subprocess.run(['umount', '-l', sys.argv[1]], check=True)
time.sleep(2)
print(os.kill(${second.pid}, 0) is None, len(os.pread(fd, 1 << 20, 0)))
os.close(fd)" "${mnt}"`)
    expect(out).toBe(`True ${(await sh('seq 1 20000')).length}\n`)
    await gone(second.pid)

    await mountLibfuse2('libfuse2-5')
    expect(await sh(`md5sum < "${mnt}/kept"`)).toBe(await sh('seq 1 20000 | md5sum'))
    await sh(`rm "${mnt}/kept"`)
    await c.ws.ok(['umount', mnt])
  })

  it('makes FIFOs and devices (mknod), which the kernel then serves itself: the mount is dev unless told nodev', async () => {
    await mountLibfuse2('libfuse2-6')
    const out = await sh(`cd "${mnt}"; mkfifo p; mknod n c 1 3; stat -c '%n %F %t %T' p n; (echo piped > p &); cat p; echo discarded > n; rm p n`)
    expect(out).toBe('p fifo 0 0\nn character special file 1 3\npiped\n')
    await c.ws.ok(['umount', mnt])
  })
})

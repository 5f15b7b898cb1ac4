import { existsSync, readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { startCluster, type ClusterHandle } from '../helpers/cluster.js'
import { PY_LIBC_DIR } from '../helpers/pydir.js'
import { sh, shFails } from '../helpers/sh.js'

/**
 * The first whole slice on a real FUSE mount with real programs: files, directories, links,
 * striping across both OSTs, errnos, and stable inode numbers.
 */
let c: ClusterHandle
let mnt: string

beforeAll(async () => {
  c = await startCluster({ net: '127.0.40', port: 24000, timeout: 10, commitInterval: 1, mmpInterval: 0.2 })
  mnt = c.mountpoint!
})

/** Object files of a target directory (committed objects live under ost/O/d*). */
function objects(target: 'ost1' | 'ost2'): Map<string, number> {
  const root = path.join(c.dir, 'targets', target, 'ost', 'O')
  const out = new Map<string, number>()
  if (!existsSync(root)) return out
  for (const d of readdirSync(root)) for (const f of readdirSync(path.join(root, d))) out.set(f, statSync(path.join(root, d, f)).size)
  return out
}

describe('a real mount used by real programs', () => {
  it('copies a tree with cp -r and reads it back identical', async () => {
    await sh(`cp -r /usr/share/doc/bash "${mnt}/doc" && diff -r /usr/share/doc/bash "${mnt}/doc"`)
    expect(await sh(`find "${mnt}/doc" -type f | wc -l`)).toBe(await sh(`find /usr/share/doc/bash -type f | wc -l`))
  })

  it('round-trips a tar archive', async () => {
    const out = await sh(`
      src=$(mktemp -d); trap 'rm -rf "$src"' EXIT
      mkdir -p "$src/t/a/b"; for i in $(seq 1 50); do head -c $((i * 997)) /dev/urandom > "$src/t/a/f$i"; done
      ln -s a/f1 "$src/t/link"; echo hi > "$src/t/a/b/deep"
      tar -C "$src" -cf - t | tar -C "${mnt}" -xf -
      tar -C "${mnt}" -cf - t | tar -C "$src" -xf - --transform 's/^t/back/'
      diff -r "$src/t" "$src/back" && echo same`)
    expect(out.trim()).toBe('same')
  })

  it('writes a 64 MiB file with dd whose sha256sum is equal', async () => {
    const out = await sh(`
      ref=$(mktemp); trap 'rm -f "$ref"' EXIT
      dd if=/dev/urandom of="$ref" bs=1M count=64 status=none
      dd if="$ref" of="${mnt}/big" bs=1M conv=fsync status=none
      sha256sum < "$ref"; sha256sum < "${mnt}/big"`)
    const [a, b] = out.trim().split('\n')
    expect(b).toBe(a)
  })

  it('moves, links and removes', async () => {
    await sh(`
      cd "${mnt}"; mkdir -p m/d1 m/d2; echo one > m/d1/f; echo two > m/d2/g
      mv m/d1/f m/d2/f; ln m/d2/f m/hard; ln -s d2/g m/sym
      mv m/d2/g m/d2/f`) // rename over an existing file
    expect(await sh(`cat "${mnt}/m/d2/f"`)).toBe('two\n')
    expect(await sh(`cat "${mnt}/m/hard"`)).toBe('one\n')
    expect(await sh(`readlink "${mnt}/m/sym"`)).toBe('d2/g\n')
    await shFails(`cat "${mnt}/m/sym"`)
    expect(await sh(`stat -c %h "${mnt}/m/hard"`)).toBe('1\n')
    await sh(`mv "${mnt}/m/d2" "${mnt}/m/d3" && mkdir "${mnt}/m/empty" && mv "${mnt}/m/d3" "${mnt}/m/empty2" && test -f "${mnt}/m/empty2/f"`)
    await sh(`rm -r "${mnt}/m"`)
    expect(existsSync(path.join(mnt, 'm'))).toBe(false)
  })

  it('reports errnos like a local filesystem', async () => {
    await sh(`mkdir "${mnt}/e" && mkdir "${mnt}/e/sub" && touch "${mnt}/e/sub/x" "${mnt}/e/file"`)
    expect(await shFails(`cat "${mnt}/e/nope"`)).toMatch(/No such file or directory/)
    expect(await shFails(`mkdir "${mnt}/e/sub"`)).toMatch(/File exists/)
    expect(await shFails(`rmdir "${mnt}/e/sub"`)).toMatch(/Directory not empty/)
    expect(await shFails(`ls "${mnt}/e/file/x"`)).toMatch(/Not a directory/)
    expect(await shFails(`rmdir "${mnt}/e/file"`)).toMatch(/Not a directory/)
    expect(await shFails(`python3 -c "import os; os.rename('${mnt}/e/sub', '${mnt}/e/sub/inner')"`)).toMatch(/Invalid argument/)
    expect(await shFails(`python3 -c "import os; os.rename('${mnt}/e/sub', '${mnt}/e/file')"`)).toMatch(/Not a directory/)
    expect(await shFails(`python3 -c "open('${mnt}/e/sub', 'w')"`)).toMatch(/IsADirectoryError/)
    expect(await shFails(`python3 -c "import os; os.open('${mnt}/e/sub/x', os.O_CREAT | os.O_EXCL | os.O_WRONLY)"`)).toMatch(/FileExistsError/)
  })

  it('handles O_APPEND, sparse files, writes past EOF and truncate', async () => {
    const out = await sh(`
      cd "${mnt}"; printf abc > ap; printf def >> ap; printf ghi >> ap; cat ap; echo
      dd if=/dev/zero of=sparse bs=1 count=1 seek=10485759 status=none; stat -c %s sparse
      head -c 10485760 sparse | cmp - <(head -c 10485760 /dev/zero) && echo zeros
      printf X | dd of=past bs=1 seek=5000 status=none conv=notrunc; stat -c %s past; od -An -c -j 5000 past
      truncate -s 3 ap; cat ap; echo; truncate -s 6 ap; od -An -tx1 ap
      python3 -c "
import os
fd = os.open('ap2', os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
os.write(fd, b'1'); os.lseek(fd, 0, 0); os.write(fd, b'2'); os.close(fd)
print(open('ap2').read())"`)
    expect(out.split('\n')).toEqual([
      'abcdefghi',
      '10485760',
      'zeros',
      '5001',
      '   X',
      'abc',
      ' 61 62 63 00 00 00',
      '12',
      '',
    ])
  })

  it('chmod, chown and utimens reach the MDT', async () => {
    const out = await sh(`
      cd "${mnt}"; echo x > perm; chmod 640 perm; chown 1234:5678 perm; touch -d '2021-02-03 04:05:06 UTC' perm
      stat -c '%a %u %g %Y' perm`)
    expect(out.trim()).toBe(`640 1234 5678 ${Date.UTC(2021, 1, 3, 4, 5, 6) / 1000}`)
  })

  it('a setgid directory passes its group on, and its setgid bit to new directories', async () => {
    const out = await sh(`
      cd "${mnt}"; mkdir sgid; chown 0:4321 sgid; chmod 2775 sgid
      touch sgid/f; mkdir sgid/d; mkdir -p plain; touch plain/f
      stat -c '%g %A' sgid/f sgid/d plain/f`)
    expect(out.trim().split('\n')).toEqual(['4321 -rw-r--r--', '4321 drwxr-sr-x', '0 -rw-r--r--'])
  })

  it('lists a large directory', async () => {
    await sh(`mkdir "${mnt}/many" && cd "${mnt}/many" && for i in $(seq 1 2500); do : > f$i; done`, { timeoutMs: 120_000 })
    expect((await sh(`ls "${mnt}/many" | wc -l`)).trim()).toBe('2500')
    expect((await sh(`ls -U "${mnt}/many" | sort | uniq | wc -l`)).trim()).toBe('2500')
  })

  it('resumes a listing read in many calls, through changes, telldir, seekdir and rewinddir, each name that stays listed once', async () => {
    const out = await sh(`cd "${mnt}/many" && python3 - <<'PY'
import os
${PY_LIBC_DIR}
def rd(h, n):
    out = []
    for _ in range(n):
        e = libc.readdir(h)
        if not e: break
        out.append(e.contents.name.decode())
    return out
h = libc.opendir(b'.')
seen = rd(h, 300)
# Half of the names not read yet go, and new ones come, while the listing is under way.
for i in range(1251, 2501, 2): os.unlink('f%d' % i)
for i in range(40): open('new%d' % i, 'w').close()
seen += rd(h, 100000)
stay = set('f%d' % i for i in range(1, 2501) if i <= 1250 or i % 2 == 0)
print('stayed', len(stay - set(seen)), 'twice', len(seen) - len(set(seen)), 'dots', seen[:2])
libc.rewinddir(h)
first = rd(h, 700)
at = libc.telldir(h)
after = rd(h, 5)
rd(h, 400)
libc.seekdir(h, at)
print('seekdir', rd(h, 5) == after, 'rewind', first[:2], len(first))
libc.closedir(h)
PY`)
    expect(out.trim().split('\n')).toEqual(["stayed 0 twice 0 dots ['.', '..']", "seekdir True rewind ['.', '..'] 700"])
  })

  it('df shows the filesystem by its source, mgsnode:/fsname, as a Lustre mount', async () => {
    const out = await sh(`df -P "${mnt}" | tail -1`)
    expect(out.startsWith(`${c.mgsnode}:/spfs `)).toBe(true)
    expect(out).toMatch(/:\/spfs\s+\d+\s+\d+\s+\d+\s+\d+%/)
  })

  it('spreads a 2-stripe file over both OSTs, and unlink destroys its objects', async () => {
    await sh(`mkdir "${mnt}/wide" && node "${path.resolve('bin/lproxy.js')}" setstripe -c 2 -S 64k "${mnt}/wide"`, {
      env: { ...process.env, LPROXY_RUN_DIR: c.ws.runDir },
    })
    await sh(`head -c 1048576 /dev/urandom > "${mnt}/wide/two" && sync "${mnt}/wide/two"`)
    const fid = Number((await sh(`stat -c %i "${mnt}/wide/two"`)).trim())
    // fsync returned: the data is committed; the OSTs apply commits to their object files.
    await expect.poll(() => [objects('ost1').get(`${fid}.0`), objects('ost2').get(`${fid}.1`)], { timeout: 10_000 }).toEqual([524288, 524288])
    await sh(`rm "${mnt}/wide/two"`)
    await expect.poll(() => [objects('ost1').has(`${fid}.0`), objects('ost2').has(`${fid}.1`)], { timeout: 20_000 }).toEqual([false, false])
  })

  it('keeps inode numbers stable across a remount', async () => {
    await sh(`mkdir -p "${mnt}/ino/d" && echo x > "${mnt}/ino/d/f"`)
    const before = await sh(`stat -c '%n %i' "${mnt}/ino" "${mnt}/ino/d" "${mnt}/ino/d/f"`)
    await c.ws.ok(['umount', mnt])
    await c.ws.ok(['mount', '--mgsnode', c.mgsnode, '--port', String(c.port), '-o', 'timeout=10', '--log', path.join(c.dir, 'logs', 'client2.log'), mnt])
    expect(await sh(`stat -c '%n %i' "${mnt}/ino" "${mnt}/ino/d" "${mnt}/ino/d/f"`)).toBe(before)
  })

  it('comes back from a clean cluster down with no target waiting for clients', async () => {
    // The MDT's OSP is connected to both OSTs (it destroyed objects above): the MDT stops first
    // and disconnects, so no OST keeps it in last_rcvd and waits for it at the next start.
    expect((await c.status()).targets.find((t) => t.name === 'ost1')!.clients.some((u) => /-MDT0000-mdtlov-[0-9a-f]+_UUID$/.test(u.uuid))).toBe(true)
    await c.down()
    await c.ws.ok(['cluster', 'up', '--dir', c.dir])
    expect((await c.status()).targets.map((t) => [t.name, t.recovery])).toEqual([['mdt0', 'INACTIVE'], ['ost1', 'INACTIVE'], ['ost2', 'INACTIVE']])
    expect(await sh(`head -c 100000 /dev/zero > "${mnt}/after-up" && stat -c %s "${mnt}/after-up"`)).toBe('100000\n')
  })
})

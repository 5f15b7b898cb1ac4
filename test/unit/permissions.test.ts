import { describe, it, expect, afterAll } from 'vitest'
import { spawn } from 'node:child_process'
import { promises as fsp } from 'node:fs'
import { Namespace, ROOT_FID } from '../../src/server/mdt/namespace.js'
import { OPS, type Cred, type OpArgs } from '../../src/protocol/ops.js'
import { MdtBackend } from '../../src/server/mdt/mdt.js'
import { effectiveCred, squashOf } from '../../src/server/mdt/squash.js'
import { parseParams } from '../../src/server/target/config.js'
import { ManualClock } from '../../src/common/clock.js'
import { silentLogger } from '../../src/common/log.js'
import type { OpContext } from '../../src/server/target/backend.js'
import { tempDir, removeTempDirs } from '../helpers/nodes.js'
import { GroupCache, asCaller, procGroups } from '../../src/common/cred.js'
import { Mdc } from '../../src/mdc/mdc.js'
import type { Import } from '../../src/ptlrpc/import.js'
import { errnoOf } from '../helpers/errno.js'

afterAll(removeTempDirs)

const ROOT: Cred = { uid: 0, gid: 0, groups: [] }
/** Owner of his home and of files in the sticky directory; a member of group 100 (staff). */
const ALICE: Cred = { uid: 1000, gid: 1000, groups: [100] }
const BOB: Cred = { uid: 2000, gid: 2000, groups: [] }
/** In group 100 only through her supplementary groups. */
const CAROL: Cred = { uid: 3000, gid: 3000, groups: [7, 100] }
const STAFF = 100
const O_RDONLY = 0
const O_WRONLY = 1
const O_RDWR = 2
const O_TRUNC = 0o1000

/**
 * A tree made by root:
 *   /        0755 root
 *   /pub     0777 root        rd (0755 root dir), into (0777 dir), w666 (0666 file of root's), mine (0644 file of bob's)
 *   /sticky  1777 root        a (0644 alice's), r (0644 root's)
 *   /priv    0700 root        x
 *   /home    0755 alice       f (0644 alice:alice), g (0640 alice:staff), n (0644 alice, group 5)
 *   /sgid    2777 root:staff
 *   /secret  0600 root
 */
function tree() {
  const ns = Namespace.fresh(1)
  let time = 1
  const run = <R>(fn: () => R): R => ns.tx(fn, { transno: ++time }).result
  const grant = ns.tx(() => ns.grantRange()).redo
  ns.rangeCommitted((grant.at(-1)!.rec as { v: number }).v)
  const mk = (parent: number, name: string, type: 'reg' | 'dir', mode: number, uid = 0, gid = 0) =>
    run(() => ns.create({ parent, name, type, mode, uid, gid, time: ++time }, 'c')).attr.fid
  const pub = mk(ROOT_FID, 'pub', 'dir', 0o777)
  const sticky = mk(ROOT_FID, 'sticky', 'dir', 0o1777)
  const priv = mk(ROOT_FID, 'priv', 'dir', 0o700)
  const home = mk(ROOT_FID, 'home', 'dir', 0o755, 1000, 1000)
  const sgid = mk(ROOT_FID, 'sgid', 'dir', 0o2777, 0, STAFF)
  const fids = {
    pub,
    sticky,
    priv,
    home,
    sgid,
    secret: mk(ROOT_FID, 'secret', 'reg', 0o600),
    rd: mk(pub, 'rd', 'dir', 0o755),
    into: mk(pub, 'into', 'dir', 0o777),
    w666: mk(pub, 'w666', 'reg', 0o666),
    mine: mk(pub, 'mine', 'reg', 0o644, 2000, 2000),
    a: mk(sticky, 'a', 'reg', 0o644, 1000, 1000),
    r: mk(sticky, 'r', 'reg', 0o644),
    x: mk(priv, 'x', 'reg', 0o644),
    f: mk(home, 'f', 'reg', 0o644, 1000, 1000),
    g: mk(home, 'g', 'reg', 0o640, 1000, STAFF),
    n: mk(home, 'n', 'reg', 0o644, 1000, 5),
  }
  return { ns, run, time: () => ++time, ...fids }
}
type Tree = ReturnType<typeof tree>

const create = (t: Tree, cred: Cred, parent: number, name: string, o: Partial<OpArgs<'mdt_create'>> = {}) =>
  t.run(() => t.ns.create({ parent, name, type: 'reg', mode: 0o644, uid: cred.uid, gid: cred.gid, time: t.time(), cred, ...o }, 'c'))
const setattr = (t: Tree, cred: Cred, fid: number, o: Partial<OpArgs<'mdt_setattr'>>) => t.run(() => t.ns.setattr({ fid, cred, ...o }, t.time()))
const open = (t: Tree, cred: Cred, fid: number, flags: number) => t.run(() => t.ns.open({ fid, flags, cred }, 'c'))
const unlink = (t: Tree, cred: Cred, parent: number, name: string, dir = false) => t.run(() => t.ns.unlink({ parent, name, dir, time: t.time(), cred }))
const rename = (t: Tree, cred: Cred, parent: number, name: string, newParent: number, newName: string) =>
  t.run(() => t.ns.rename({ parent, name, new_parent: newParent, new_name: newName, time: t.time(), cred }))

type Case = [who: string, cred: Cred, op: string, run: (t: Tree, c: Cred) => unknown, expected: string]

const cases: Case[] = [
  // search (x) on the directory a name is resolved in; read to list it
  ['alice', ALICE, 'lookup in a 0700 root directory', (t, c) => t.ns.search(c, t.priv), 'EACCES'],
  ['root', ROOT, 'lookup in a 0700 root directory', (t, c) => t.ns.search(c, t.priv), 'ok'],
  ['bob', BOB, 'readdir of a 0700 root directory', (t, c) => t.ns.mayList(c, t.priv), 'EACCES'],
  ['bob', BOB, 'readdir of a 0755 directory', (t, c) => t.ns.mayList(c, t.home), 'ok'],
  // create: write and search on the parent; the owner is the caller, the group one of his
  ['alice', ALICE, 'create in the 0755 root directory', (t, c) => create(t, c, ROOT_FID, 'new'), 'EACCES'],
  ['alice', ALICE, 'create in a 0777 directory', (t, c) => create(t, c, t.pub, 'new'), 'ok'],
  ['alice', ALICE, 'create in a 0700 root directory', (t, c) => create(t, c, t.priv, 'new'), 'EACCES'],
  ['alice', ALICE, "create a file owned by root (a forged uid)", (t, c) => create(t, c, t.pub, 'new', { uid: 0 }), 'EPERM'],
  ['alice', ALICE, 'create a file of her supplementary group', (t, c) => create(t, c, t.pub, 'new', { gid: STAFF }), 'ok'],
  ['alice', ALICE, 'create a file of a group not hers', (t, c) => create(t, c, t.pub, 'new', { gid: 2000 }), 'EPERM'],
  ['root', ROOT, 'create a file owned by anyone', (t, c) => create(t, c, ROOT_FID, 'new', { uid: 4242, gid: 4242 }), 'ok'],
  ['bob', BOB, "open(O_CREAT) of alice's existing 0644 file for writing", (t, c) => create(t, c, t.home, 'f', { open_flags: O_WRONLY }), 'EACCES'],
  // open: read/write by the access mode, write for O_TRUNC
  ['bob', BOB, "open a root 0600 file for reading", (t, c) => open(t, c, t.secret, O_RDONLY), 'EACCES'],
  ['bob', BOB, "open a root 0600 file for writing", (t, c) => open(t, c, t.secret, O_WRONLY), 'EACCES'],
  ['root', ROOT, "open a root 0600 file read-write", (t, c) => open(t, c, t.secret, O_RDWR), 'ok'],
  ['bob', BOB, 'open a 0640 staff file for reading', (t, c) => open(t, c, t.g, O_RDONLY), 'EACCES'],
  ['carol', CAROL, 'open a 0640 staff file for reading (supplementary group)', (t, c) => open(t, c, t.g, O_RDONLY), 'ok'],
  ['carol', CAROL, 'open a 0640 staff file for writing', (t, c) => open(t, c, t.g, O_WRONLY), 'EACCES'],
  ['bob', BOB, 'open a 0644 file with O_TRUNC', (t, c) => open(t, c, t.f, O_RDONLY | O_TRUNC), 'EACCES'],
  ['bob', BOB, 'open a 0666 file for writing', (t, c) => open(t, c, t.w666, O_WRONLY), 'ok'],
  // unlink and rename in a sticky directory: only the file's or the directory's owner, or root
  ['bob', BOB, "unlink alice's file in a sticky directory", (t, c) => unlink(t, c, t.sticky, 'a'), 'EPERM'],
  ['alice', ALICE, 'unlink her own file in a sticky directory', (t, c) => unlink(t, c, t.sticky, 'a'), 'ok'],
  ['alice', ALICE, "unlink root's file in a sticky directory", (t, c) => unlink(t, c, t.sticky, 'r'), 'EPERM'],
  ['root', ROOT, "unlink alice's file in a sticky directory", (t, c) => unlink(t, c, t.sticky, 'a'), 'ok'],
  ['bob', BOB, "rename alice's file in a sticky directory", (t, c) => rename(t, c, t.sticky, 'a', t.sticky, 'b'), 'EPERM'],
  ['bob', BOB, "rename his file over alice's in a sticky directory", (t, c) => rename(t, c, t.pub, 'mine', t.sticky, 'a'), 'EPERM'],
  ['bob', BOB, "unlink root's file in a 0777 directory (not sticky)", (t, c) => unlink(t, c, t.pub, 'w666'), 'ok'],
  ['alice', ALICE, 'unlink in the 0755 root directory', (t, c) => unlink(t, c, ROOT_FID, 'secret'), 'EACCES'],
  ['alice', ALICE, 'unlink in a 0700 directory', (t, c) => unlink(t, c, t.priv, 'x'), 'EACCES'],
  ['alice', ALICE, 'rmdir a root directory in a 0777 directory', (t, c) => unlink(t, c, t.pub, 'into', true), 'ok'],
  // rename: a directory moving elsewhere needs write on itself ('..' changes)
  ['alice', ALICE, "move root's 0755 directory to another parent", (t, c) => rename(t, c, t.pub, 'rd', t.into, 'rd'), 'EACCES'],
  ['alice', ALICE, "rename root's 0755 directory in place", (t, c) => rename(t, c, t.pub, 'rd', t.pub, 'rd2'), 'ok'],
  ['alice', ALICE, 'rename into the 0755 root directory', (t, c) => rename(t, c, t.pub, 'w666', ROOT_FID, 'w'), 'EACCES'],
  // link: write and search on the new parent
  ['alice', ALICE, 'link into a 0777 directory', (t, c) => t.run(() => t.ns.link({ fid: t.w666, parent: t.into, name: 'l', time: 9, cred: c })), 'ok'],
  ['alice', ALICE, 'link into the 0755 root directory', (t, c) => t.run(() => t.ns.link({ fid: t.w666, parent: ROOT_FID, name: 'l', time: 9, cred: c })), 'EACCES'],
  // chmod: the owner or root
  ['alice', ALICE, "chmod root's file", (t, c) => setattr(t, c, t.secret, { mode: 0o666 }), 'EPERM'],
  ['alice', ALICE, 'chmod her file', (t, c) => setattr(t, c, t.f, { mode: 0o600 }), 'ok'],
  ['root', ROOT, "chmod alice's file", (t, c) => setattr(t, c, t.f, { mode: 0o600 }), 'ok'],
  // chown: only root gives a file away; the owner gives it one of his groups
  ['alice', ALICE, 'chown her file to bob', (t, c) => setattr(t, c, t.f, { uid: 2000 }), 'EPERM'],
  ['alice', ALICE, 'chown her file to herself (unchanged)', (t, c) => setattr(t, c, t.f, { uid: 1000 }), 'ok'],
  ['root', ROOT, "chown alice's file to bob", (t, c) => setattr(t, c, t.f, { uid: 2000 }), 'ok'],
  ['alice', ALICE, 'chgrp her file to her group staff', (t, c) => setattr(t, c, t.f, { gid: STAFF }), 'ok'],
  ['alice', ALICE, 'chgrp her file to a group not hers', (t, c) => setattr(t, c, t.f, { gid: 2000 }), 'EPERM'],
  ['bob', BOB, "chgrp alice's file to his group", (t, c) => setattr(t, c, t.f, { gid: 2000 }), 'EPERM'],
  ['bob', BOB, "chown a root 0600 file to himself (the forged setattr)", (t, c) => setattr(t, c, t.secret, { uid: 2000, mode: 0o777 }), 'EPERM'],
  // utimes: explicit times by the owner; "now" by anyone who may write
  ['bob', BOB, "set explicit times on alice's file", (t, c) => setattr(t, c, t.f, { atime: 5, mtime: 5 }), 'EPERM'],
  ['bob', BOB, "touch (now) alice's 0644 file", (t, c) => setattr(t, c, t.f, { atime: 5, mtime: 5, times_now: true }), 'EACCES'],
  ['bob', BOB, "touch (now) root's 0666 file", (t, c) => setattr(t, c, t.w666, { atime: 5, mtime: 5, times_now: true }), 'ok'],
  ['bob', BOB, "set explicit times on root's 0666 file", (t, c) => setattr(t, c, t.w666, { mtime: 5 }), 'EPERM'],
  ['alice', ALICE, 'set explicit times on her file', (t, c) => setattr(t, c, t.f, { mtime: 5 }), 'ok'],
  // a writer (not the owner) may drop the setuid/setgid bits, as the kernel does on write, and nothing more
  ['bob', BOB, "drop the setuid bit of root's 0666 file he writes", (t, c) => (setattr(t, ROOT, t.w666, { mode: 0o4666 }), setattr(t, c, t.w666, { mode: 0o666 })), 'ok'],
  ['bob', BOB, "drop the setuid bit and a write bit of root's 0666 file", (t, c) => (setattr(t, ROOT, t.w666, { mode: 0o4666 }), setattr(t, c, t.w666, { mode: 0o644 })), 'EPERM'],
  ['bob', BOB, "drop the setuid bit of root's 4644 file he may not write", (t, c) => (setattr(t, ROOT, t.secret, { mode: 0o4644 }), setattr(t, c, t.secret, { mode: 0o644 })), 'EPERM'],
  // default layouts of directories: the owner
  ['alice', ALICE, "set the default layout of root's directory", (t, c) => setattr(t, c, t.pub, { dir_layout: null }), 'EPERM'],
]

describe('MDT permissions: who may do what', () => {
  it.each(cases)('%s: %s -> %s', (_who, cred, _op, run, expected) => {
    const t = tree()
    expect(errnoOf(() => run(t, cred))).toBe(expected)
  })

  it('changes nothing when it refuses', () => {
    const t = tree()
    const before = JSON.stringify(t.ns.image())
    expect(errnoOf(() => setattr(t, BOB, t.secret, { uid: 2000, mode: 0o777 }))).toBe('EPERM')
    expect(errnoOf(() => unlink(t, BOB, t.sticky, 'a'))).toBe('EPERM')
    expect(JSON.stringify(t.ns.image())).toBe(before)
  })
})

describe('MDT permissions: setgid', () => {
  it('a setgid directory gives its group to new entries, and its bit to new subdirectories', () => {
    const t = tree()
    const f = create(t, ALICE, t.sgid, 'f').attr
    const d = create(t, BOB, t.sgid, 'd', { type: 'dir', mode: 0o755 }).attr
    expect([f.gid, f.mode]).toEqual([STAFF, 0o644])
    expect([d.gid, d.mode]).toEqual([STAFF, 0o2755])
    // ... whatever group the (non-member) caller asked for.
    expect(create(t, BOB, t.sgid, 'g', { gid: BOB.gid }).attr.gid).toBe(STAFF)
  })

  it("drops a non-member's setgid bit on a new group-executable file; a member keeps it", () => {
    const t = tree()
    expect(create(t, BOB, t.sgid, 'b', { mode: 0o2755 }).attr.mode).toBe(0o755)
    expect(create(t, CAROL, t.sgid, 'c', { mode: 0o2755 }).attr.mode).toBe(0o2755)
  })

  it("chmod g+s by the owner not in the file's group sets the rest and clears the bit; a member keeps it", () => {
    const t = tree()
    expect(setattr(t, ALICE, t.n, { mode: 0o2755 }).attr.mode).toBe(0o755)
    expect(setattr(t, ALICE, t.g, { mode: 0o2750 }).attr.mode).toBe(0o2750)
    expect(setattr(t, ROOT, t.n, { mode: 0o2755 }).attr.mode).toBe(0o2755)
  })
})

describe('root_squash and nosquash_nids', () => {
  const squash = squashOf(parseParams(['root_squash=65534:65534', 'nosquash_nids=127.0.0.9@tcp,*@tcp7']))!

  it.each<[string, Cred | undefined, string | undefined, Cred]>([
    ['root from a squashed NID', ROOT, '127.0.0.2@tcp', { uid: 65534, gid: 65534, groups: [] }],
    ['no identity (root) from a squashed NID', undefined, '127.0.0.2@tcp', { uid: 65534, gid: 65534, groups: [] }],
    ['root from an unknown peer', { uid: 0, gid: 5, groups: [1, 2] }, undefined, { uid: 65534, gid: 65534, groups: [] }],
    ['root from a nosquash NID', ROOT, '127.0.0.9@tcp', ROOT],
    ['root from a nosquash NID, tcp0 spelt for tcp', ROOT, '127.0.0.9@tcp0', ROOT],
    ['root from a nosquash network', ROOT, '10.1.1.1@tcp7', ROOT],
    ['a user', ALICE, '127.0.0.2@tcp', ALICE],
  ])('%s', (_what, cred, peer, expected) => {
    expect(effectiveCred(squash, cred, peer).cred).toEqual(expected)
  })

  it('is off without root_squash; the params are checked at format', () => {
    expect(squashOf(parseParams(['nosquash_nids=127.0.0.9@tcp']))).toBeUndefined()
    expect(effectiveCred(undefined, ROOT, '127.0.0.2@tcp').cred).toEqual(ROOT)
    expect(() => parseParams(['root_squash=65534'])).toThrow(/uid:gid/)
    expect(() => parseParams(['root_squash=-1:0'])).toThrow(/uid:gid/)
    expect(() => parseParams(['nosquash_nids=127.0.0.1@ib'])).toThrow(/not supported/)
    expect(() => parseParams(['root_squash=nobody'])).toThrow(/uid:gid/)
  })

  it("the MDT squashes a root request: it cannot read a 0700 directory, and what it creates is the squash uid's", async () => {
    const clock = new ManualClock()
    const mdt = new MdtBackend({ dir: await tempDir('lp-perm'), clock, squash })
    await mdt.load(undefined)
    mdt.start(silentLogger, (redo) => void mdt.afterCommit(redo))
    const ctx = (peer: string, transno = 0): OpContext => ({ client: 'c', transno, bulk: [], now: 1, peer })
    const args = <O extends 'mdt_create' | 'mdt_lookup' | 'mdt_readdir'>(op: O, a: unknown) => OPS[op].args.parse(a)
    const mk = (peer: string, name: string, type: 'dir' | 'reg', mode: number, transno: number) =>
      mdt.apply('mdt_create', args('mdt_create', { parent: ROOT_FID, name, type, mode, uid: 0, gid: 0, time: 1 }), ctx(peer, transno)).body as { attr: { fid: number; uid: number; gid: number } }
    const d = mk('127.0.0.9@tcp', 'd', 'dir', 0o700, 1)
    expect([d.attr.uid, d.attr.gid]).toEqual([0, 0])
    await expect(mdt.query('mdt_readdir', args('mdt_readdir', { fid: d.attr.fid, cookie: 0, count: 10, cred: ROOT }), ctx('127.0.0.2@tcp'))).rejects.toMatchObject({ code: 'EACCES' })
    await expect(mdt.query('mdt_lookup', args('mdt_lookup', { parent: d.attr.fid, name: 'x' }), ctx('127.0.0.2@tcp'))).rejects.toMatchObject({ code: 'EACCES' })
    await expect(mdt.query('mdt_lookup', args('mdt_lookup', { parent: d.attr.fid, name: 'x' }), ctx('127.0.0.9@tcp'))).rejects.toMatchObject({ code: 'ENOENT' })
    // The root directory is root's 0755: a squashed root may not create in it.
    expect(() => mk('127.0.0.2@tcp', 'f', 'reg', 0o644, 2)).toThrow(/uid 65534 may not change entries/)
    const pub = mk('127.0.0.9@tcp', 'pub', 'dir', 0o777, 3)
    const f = mdt.apply('mdt_create', args('mdt_create', { parent: pub.attr.fid, name: 'f', type: 'reg', mode: 0o644, uid: 0, gid: 0, time: 1 }), ctx('127.0.0.2@tcp', 4)).body as { attr: { uid: number; gid: number } }
    expect([f.attr.uid, f.attr.gid]).toEqual([65534, 65534])
    await mdt.close()
  })
})

describe('cred on the wire', () => {
  it('is validated: ids are 32-bit unsigned, groups bounded', () => {
    const ok = { fid: 2, cred: { uid: 1, gid: 2, groups: [3] } }
    expect(OPS.mdt_getattr.args.safeParse(ok).success).toBe(true)
    for (const cred of [{ uid: -1, gid: 0, groups: [] }, { uid: 2 ** 32, gid: 0, groups: [] }, { uid: 1, gid: 1 }, { uid: 1, gid: 1, groups: ['0'] }, { uid: 1, gid: 1, groups: Array(65537).fill(1) }])
      expect(OPS.mdt_getattr.args.safeParse({ fid: 2, cred }).success).toBe(false)
  })
})

describe("the caller's identity on the client", () => {
  it('groups are read once per pid within the TTL, again after it', () => {
    let now = 0
    const reads: number[] = []
    const cache = new GroupCache(() => now, 1000, 2, (pid) => (reads.push(pid), [pid, 100]))
    expect(cache.groups(7)).toEqual([7, 100])
    now = 999
    expect(cache.groups(7)).toEqual([7, 100])
    expect(reads).toEqual([7])
    now = 1000
    cache.groups(7)
    expect(reads).toEqual([7, 7])
    // Bounded: a third pid evicts.
    cache.groups(8)
    cache.groups(9)
    cache.groups(7)
    expect(reads).toEqual([7, 7, 8, 9, 7])
    // The one least recently asked for goes: 7, not 9 (asked for again since 7 was read).
    cache.groups(9)
    cache.groups(10)
    cache.groups(9)
    expect(reads).toEqual([7, 7, 8, 9, 7, 10])
    // Pid 0 (a request the kernel makes itself) has no process to read.
    expect(cache.groups(0)).toEqual([])
  })

  it("procGroups reads a process's supplementary groups from its Groups: line ([] once it is gone)", async () => {
    const child = spawn('setpriv', ['--reuid', '4243', '--regid', '4243', '--groups', '4242,7', 'sleep', '30'], { stdio: 'ignore' })
    try {
      // setpriv execs sleep with the groups set: poll until the process is sleep.
      for (const end = Date.now() + 5000; Date.now() < end && !/^sleep/.test(await fsp.readFile(`/proc/${child.pid}/comm`, 'utf8').catch(() => '')); )
        await new Promise((r) => setImmediate(r))
      expect(procGroups(child.pid!)).toEqual([7, 4242])
    } finally {
      child.kill('SIGKILL')
    }
    expect(procGroups(2 ** 30)).toEqual([])
  })

  it('the mdc packs the current caller into MDT requests, and none outside a caller', async () => {
    const sent: unknown[] = []
    const imp = { request: async (_op: string, a: unknown) => (sent.push(a), { body: { attr: {} } }) } as unknown as Import
    const mdc = new Mdc(imp, { clock: new ManualClock(), log: silentLogger })
    await asCaller(ALICE, () => mdc.getattr(5))
    await mdc.getattr(6)
    expect(sent).toEqual([{ fid: 5, cred: ALICE }, { fid: 6 }])
  })
})

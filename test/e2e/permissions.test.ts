import { chmod } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import { execFile } from 'node:child_process'
import { Client } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCluster, type ClusterHandle } from '../helpers/cluster.js'
import { sh } from '../helpers/sh.js'
import { RPC_PATH, decodeFrameChunks, decodeReplyHeader, encodeFrame, encodeReqHeader, type ReqHeader } from '../../src/protocol/wire.js'
import { parseNid } from '../../src/protocol/nid.js'

/**
 * Permissions through a real mount as unprivileged users (the kernel checks with
 * default_permissions, and so now does the MDT, with the caller's uid, gid and supplementary
 * groups), and the MDT refusing on its own a request sent to it directly with a made-up
 * identity, root squashed for a NID not in nosquash_nids.
 */
const NOBODY = 65534
/** A user with a supplementary group, the group of the setgid directory. */
const USER = 4243
const GROUP = 4242
const FORGER_ADDR = '127.0.90.200'

let c: ClusterHandle
let mnt: string

/** Run `script` in the mount as `uid` (with `groups`); 'ok' or what it printed on stderr. */
function as(uid: number, script: string, groups: number[] = []): Promise<string> {
  const ids = ['--reuid', String(uid), '--regid', String(uid), ...(groups.length ? ['--groups', groups.join(',')] : ['--clear-groups'])]
  return new Promise((resolve) => {
    execFile('setpriv', [...ids, 'bash', '-euo', 'pipefail', '-c', script], { cwd: mnt, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve(err ? stderr.trim() || `exit ${String(err.code)}` : stdout.trim() || 'ok'),
    )
  })
}

const EPERM = /Operation not permitted/
const EACCES = /Permission denied/

beforeAll(async () => {
  c = await startCluster({
    net: '127.0.90',
    port: 29000,
    timeout: 10,
    commitInterval: 1,
    mmpInterval: 0.2,
    // The mount (and the nodes) reach the MDT from 127.0.0.1: root there stays root.
    params: { root_squash: `${NOBODY}:${NOBODY}`, nosquash_nids: '127.0.0.1@tcp' },
  })
  mnt = c.mountpoint!
  // Other users must reach the mountpoint through the test's private temporary directories.
  await chmod(c.ws.dir, 0o755)
  await chmod(c.dir, 0o755)
  await sh(`cd "${mnt}"; echo secret > secret; chmod 600 secret; mkdir sticky pub sgid; chmod 1777 sticky; chmod 777 pub; chgrp ${GROUP} sgid; chmod 2777 sgid`)
})

afterAll(async () => {
  await c?.down()
})

describe('permissions through the mount', () => {
  it("a root 0600 file is neither readable nor writable by others; root's is", async () => {
    expect(await as(NOBODY, 'cat secret')).toMatch(EACCES)
    expect(await as(USER, 'echo x >> secret', [GROUP])).toMatch(EACCES)
    expect(await as(USER, 'chmod 666 secret', [GROUP])).toMatch(EPERM)
    expect(await sh(`cat "${mnt}/secret"; stat -c '%a %u' "${mnt}/secret"`)).toBe('secret\n600 0\n')
  })

  it('in a sticky directory only the owner of a file (or of the directory, or root) removes or renames it; chmod/chown by others are refused', async () => {
    expect(await as(NOBODY, 'echo n > sticky/n')).toBe('ok')
    expect(await as(USER, 'rm -f sticky/n', [GROUP])).toMatch(EPERM)
    expect(await as(USER, 'mv sticky/n sticky/m', [GROUP])).toMatch(EPERM)
    expect(await as(USER, 'chmod 777 sticky/n', [GROUP])).toMatch(EPERM)
    expect(await as(USER, `chown ${USER} sticky/n`, [GROUP])).toMatch(EPERM)
    expect(await as(NOBODY, `chown ${USER} sticky/n`)).toMatch(EPERM)
    expect(await as(NOBODY, 'chmod 600 sticky/n; cat sticky/n')).toBe('n')
    expect(await as(USER, 'cat sticky/n', [GROUP])).toMatch(EACCES)
    expect(await as(NOBODY, 'mv sticky/n sticky/m; rm sticky/m')).toBe('ok')
    await sh(`echo r > "${mnt}/sticky/r"`)
    expect(await as(NOBODY, 'rm -f sticky/r')).toMatch(EPERM)
    expect(await sh(`cat "${mnt}/sticky/r"; ls "${mnt}/sticky"`)).toBe('r\nr\n')
  })

  it('a setgid directory gives new entries its group and new subdirectories its bit; a supplementary group is the caller’s to give', async () => {
    expect(await as(USER, 'touch sgid/f; mkdir sgid/d; stat -c "%g %A" sgid/f sgid/d', [])).toBe(`${GROUP} -rw-r--r--\n${GROUP} drwxr-sr-x`)
    expect(await as(NOBODY, 'touch sgid/g; stat -c %g sgid/g')).toBe(String(GROUP))
    // The group comes from the caller's supplementary groups (/proc/PID/status), checked on the MDT too.
    expect(await as(USER, `touch pub/own; chgrp ${GROUP} pub/own; stat -c %g pub/own`, [GROUP])).toBe(String(GROUP))
    expect(await as(USER, 'chgrp 0 pub/own', [GROUP])).toMatch(EPERM)
    expect(await as(USER, `touch pub/own2; chgrp ${GROUP} pub/own2`, [])).toMatch(EPERM)
  })
})

/** One client speaking the wire protocol itself, from its own address (not the mount's). */
class Forger {
  private readonly http: Client
  private readonly uuid = `forger-${randomBytes(4).toString('hex')}`
  private xid = 0
  private handle: string | undefined

  constructor(nid: string, port: number) {
    // undici's connect options do not take a local address: the socket is made here.
    this.http = new Client(`http://${parseNid(nid).host}:${port}`, {
      connect: (o, cb) => {
        const sock = net.connect({ host: o.hostname, port: Number(o.port), localAddress: FORGER_ADDR })
        sock.once('connect', () => cb(null, sock))
        sock.once('error', (e) => cb(e, null))
      },
    })
  }

  async call<B = Record<string, unknown>>(op: string, a: unknown): Promise<{ status: number; body: B; error?: string }> {
    const xid = ++this.xid
    const h: ReqHeader = { target: 'spfs-MDT0000', op, client: this.uuid, handle: this.handle, connCnt: 1, xid, lastXid: xid - 1, flags: [] }
    const r = await this.http.request({ path: RPC_PATH, method: 'POST', headers: encodeReqHeader(h), body: Buffer.concat(encodeFrame({ a })) })
    const chunks: Buffer[] = []
    for await (const ch of r.body) chunks.push(ch as Buffer)
    const rh = decodeReplyHeader(r.headers as Record<string, string>)
    return { status: rh.status, body: decodeFrameChunks(chunks).json as B, error: rh.error }
  }

  async connect(): Promise<void> {
    const r = await this.call<{ handle: string }>('connect', {})
    expect(r.status).toBe(0)
    this.handle = r.body.handle
  }

  async close(): Promise<void> {
    await this.call('disconnect', {})
    await this.http.close()
  }
}

describe('requests sent to the MDT directly', () => {
  it('claiming uid 65534 cannot open or change a root 0600 file; claiming root from a squashed NID acts as the squash uid', async () => {
    const [fid, pub] = (await sh(`stat -c %i "${mnt}/secret" "${mnt}/pub"`)).trim().split('\n').map(Number) as [number, number]
    const f = new Forger(c.nids.mds1!, c.port)
    try {
      await f.connect()
      const nobody = { uid: NOBODY, gid: NOBODY, groups: [] }
      expect((await f.call('mdt_open', { fid, flags: 0, cred: nobody })).status).toBe(-13) // EACCES
      expect((await f.call('mdt_setattr', { fid, mode: 0o777, cred: nobody })).status).toBe(-1) // EPERM
      // Another file's owner's uid (root's) from a squashed NID: squashed, so refused as well.
      const root = { uid: 0, gid: 0, groups: [] }
      expect((await f.call('mdt_setattr', { fid, uid: NOBODY, mode: 0o777, cred: root })).status).toBe(-1)
      expect((await f.call('mdt_setattr', { fid, mode: 0o777 })).status).toBe(-1)
      expect((await f.call('mdt_open', { fid, flags: 2, cred: root })).status).toBe(-13)
      // A squashed root's file is the squash uid's, whatever the request says.
      const made = await f.call<{ attr: { uid: number; gid: number } }>('mdt_create', { parent: pub, name: 'forged', type: 'reg', mode: 0o644, uid: 0, gid: 0, time: Date.now(), cred: root })
      expect(made.status).toBe(0)
      expect([made.body.attr.uid, made.body.attr.gid]).toEqual([NOBODY, NOBODY])
      // A uid that is not the caller's own is refused for the new file's owner.
      expect((await f.call('mdt_create', { parent: pub, name: 'forged2', type: 'reg', mode: 0o644, uid: 0, gid: 0, time: Date.now(), cred: nobody })).status).toBe(-1)
    } finally {
      await f.close()
    }
    // Nothing changed; root on the mount (a nosquash NID) is still root.
    expect(await sh(`stat -c '%a %u %g' "${mnt}/secret"; cat "${mnt}/secret"; chmod 640 "${mnt}/secret"; stat -c %a "${mnt}/secret"`)).toBe('600 0 0\nsecret\n640\n')
  })
})

import { describe, it, expect, afterAll } from 'vitest'
import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { silentLogger } from '../../src/common/log.js'
import { type KeyFile, deriveKey, generateKey, readKeyFile, signingKeyOf, writeKeyFile } from '../../src/common/keyfile.js'
import { AUTH_WINDOW_MS, AuthError, signRequest, verifyReply, type SigningKey } from '../../src/protocol/auth.js'
import type { ReplyHeader, ReqHeader } from '../../src/protocol/wire.js'
import { answer, type FrontTarget } from '../../src/server/admit.js'
import { Guard } from '../../src/server/guard.js'
import { NonceCache } from '../../src/server/nonces.js'
import { RequestSigner } from '../../src/ptlrpc/sign.js'
import { TransportError } from '../../src/ptlrpc/lnd.js'
import { tempDir, removeTempDirs } from '../helpers/nodes.js'

afterAll(removeTempDirs)

const T0 = 1_800_000_000_000
const master = generateKey('spfs')
const fsKey = signingKeyOf(master, 'fs')
const h: ReqHeader = { target: 'spfs-MDT0000', op: 'mdt_getattr', client: 'c1', handle: '00000000000000aa', connCnt: 2, xid: 77, lastXid: 70, flags: [] }
const json = Buffer.from(JSON.stringify({ a: { fid: 1 } }))
const bulk = [Buffer.from('some'), Buffer.from('bytes')]
// Small bulk enters a MAC as its bytes, large bulk (past 64 KiB) through its GMAC: tests check both.
const bulks = [Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz'), Buffer.from(Array.from({ length: 100 * 1024 + 7 }, (_, i) => (i * 31) % 251))]

function setup() {
  let wall = T0
  const clock = { wallNow: () => wall, setWall: (t: number) => void (wall = t) }
  return { clock, guard: new Guard(master, clock) }
}

function sign(key: SigningKey = fsKey, hdr: ReqHeader = h, at = T0, body = json, b = bulk) {
  return signRequest(key, hdr, body, b, at)
}

function reason(fn: () => unknown): string {
  try {
    fn()
  } catch (e) {
    if (e instanceof AuthError) return e.reason
    throw e
  }
  return 'accepted'
}

describe('shared-key requests', () => {
  it('accepts a signed request, header then body, and names the class that signed it', () => {
    const { guard } = setup()
    const s = sign()
    const p = guard.admitHeader(h, s.token)
    expect(p.cls).toBe('fs')
    expect(() => guard.admitBody(p, json, bulk)).not.toThrow()
  })

  it('checks the bulk by its bytes, however they are cut, and refuses any other bytes or a bulk moved into the JSON', () => {
    const { guard } = setup()
    for (const data of bulks) {
      const p = guard.admitHeader(h, sign(fsKey, h, T0, json, [data]).token)
      const n = data.length
      expect(() => guard.admitBody(p, json, [data.subarray(0, 3), data.subarray(3, n - 16), data.subarray(n - 16)])).not.toThrow()
      const flipped = Buffer.from(data)
      flipped[n - 19]! ^= 1
      expect(reason(() => guard.admitBody(p, json, [flipped]))).toBe('body')
      expect(reason(() => guard.admitBody(p, json, [data.subarray(0, n - 1)]))).toBe('body')
      expect(reason(() => guard.admitBody(p, json, [data, Buffer.alloc(1)]))).toBe('body')
      expect(reason(() => guard.admitBody(p, Buffer.concat([json, data]), []))).toBe('body')
    }
  })

  it('refuses a tampered header field, a tampered body, another key, a missing or malformed token', () => {
    const { guard } = setup()
    for (const changed of [{ ...h, xid: 78 }, { ...h, client: 'c2' }, { ...h, handle: undefined }, { ...h, op: 'mdt_setattr' }, { ...h, flags: ['resend' as const] }, { ...h, transno: 5 }])
      expect(reason(() => guard.admitHeader(changed, sign().token))).toBe('mac')
    const p = guard.admitHeader(h, sign().token)
    expect(reason(() => guard.admitBody(p, Buffer.from(JSON.stringify({ a: { fid: 2 } })), bulk))).toBe('body')
    expect(reason(() => guard.admitBody(p, json, [Buffer.from('somebytes!')]))).toBe('body')
    const other = signingKeyOf(generateKey('spfs'), 'fs')
    expect(reason(() => guard.admitHeader(h, sign(other).token))).toBe('mac')
    expect(reason(() => guard.admitHeader(h, undefined))).toBe('missing')
    expect(reason(() => guard.admitHeader(h, 'v2.fs.1.x.y.z'))).toBe('malformed')
    // The class is covered by the MAC: an fs signature relabelled admin does not pass.
    expect(reason(() => guard.admitHeader({ ...h, op: 'mgs_set_param' }, sign(fsKey, { ...h, op: 'mgs_set_param' }).token.replace('v3.fs.', 'v3.admin.')))).toBe('mac')
  })

  it('refuses a request signed outside the time window, either way', () => {
    const { guard } = setup()
    expect(reason(() => guard.admitHeader(h, sign(fsKey, h, T0 - AUTH_WINDOW_MS - 1).token))).toBe('stale')
    expect(reason(() => guard.admitHeader(h, sign(fsKey, h, T0 + AUTH_WINDOW_MS + 1).token))).toBe('stale')
    expect(reason(() => guard.admitHeader(h, sign(fsKey, h, T0 - AUTH_WINDOW_MS + 1000).token))).toBe('accepted')
  })

  it('refuses a replayed request (same nonce), even once its first copy was answered', () => {
    const { guard, clock } = setup()
    const s = sign()
    expect(reason(() => guard.admitHeader(h, s.token))).toBe('accepted')
    clock.setWall(T0 + 60_000)
    expect(reason(() => guard.admitHeader(h, s.token))).toBe('replay')
    // Long after, the window refuses it.
    clock.setWall(T0 + AUTH_WINDOW_MS + 1)
    expect(reason(() => guard.admitHeader(h, s.token))).toBe('stale')
  })

  it('past its nonce cap, refuses what it can no longer tell from a replay as signed too early, and says why', () => {
    const guard = new Guard(master, { wallNow: () => T0 + 10_000 }, new NonceCache(2))
    for (const at of [T0, T0 + 1000, T0 + 2000]) expect(reason(() => guard.admitHeader(h, sign(fsKey, h, at).token))).toBe('accepted')
    // The nonce signed at T0 was forgotten: nothing signed then or earlier gets in, nonce new or not.
    const late = sign(fsKey, h, T0)
    expect(reason(() => guard.admitHeader(h, late.token))).toBe('stale')
    expect(() => guard.admitHeader(h, late.token)).toThrow(/signed 10 s before this server's clock.*newest 2 nonces, signed since 10 s ago.*clock behind/)
    expect(reason(() => guard.admitHeader(h, sign(fsKey, h, T0 + 500).token))).toBe('accepted')
  })

  it('takes a key of the class the op needs: admin for configuration changes, node for registration and destroys', () => {
    const { guard } = setup()
    const op = (o: string, cls: 'fs' | 'node' | 'admin') => reason(() => guard.admitHeader({ ...h, op: o }, sign(signingKeyOf(master, cls), { ...h, op: o }).token))
    expect(op('mgs_set_param', 'fs')).toBe('class')
    expect(op('mgs_set_param', 'node')).toBe('class')
    expect(op('mgs_set_param', 'admin')).toBe('accepted')
    expect(op('mgs_target_reg', 'fs')).toBe('class')
    expect(op('mgs_target_reg', 'node')).toBe('accepted')
    expect(op('ost_destroy', 'fs')).toBe('class')
    for (const cls of ['fs', 'node', 'admin'] as const) expect(op('mdt_getattr', cls)).toBe('accepted')
  })
})

describe('the nonce cache', () => {
  it('stays within its cap, raising its floor so that nothing forgotten is accepted again', () => {
    const c = new NonceCache(3)
    for (let i = 0; i < 5; i++) expect(c.admit(`n${i}`, T0 + i, T0 + 10)).toBe(true)
    expect(c.size).toBe(3)
    // n0 and n1 were forgotten: their timestamps are at or under the floor now.
    expect(c.admit('n0', T0, T0 + 10)).toBe(false)
    expect(c.admit('n1', T0 + 1, T0 + 10)).toBe(false)
    expect(c.admit('n4', T0 + 4, T0 + 10)).toBe(false)
    expect(c.admit('n5', T0 + 5, T0 + 10)).toBe(true)
  })

  it('forgets in the order it admitted, round and round its cap', () => {
    const c = new NonceCache(3)
    for (let i = 0; i < 10; i++) expect(c.admit(`n${i}`, T0 + i, T0 + 10)).toBe(true)
    expect(c.size).toBe(3)
    for (const n of ['n7', 'n8', 'n9']) expect(c.admit(n, T0 + 20, T0 + 10)).toBe(false)
    expect(c.admit('n6', T0 + 6, T0 + 10)).toBe(false)
    expect(c.admit('x', T0 + 6.5, T0 + 10)).toBe(true)
    // n7 went for x: its own timestamp is the floor now, and n8 still remembered.
    expect(c.admit('y', T0 + 7, T0 + 10)).toBe(false)
    expect(c.admit('n8', T0 + 20, T0 + 10)).toBe(false)
    // The window passes n8, n9 and x, the ring's last: all forgotten, each new one admitted.
    const later = T0 + AUTH_WINDOW_MS + 9.5
    expect(c.admit('z', T0 + 30, later)).toBe(true)
    expect(c.size).toBe(1)
    expect(c.admit('n9', T0 + 30, later)).toBe(true)
    expect(c.admit('z', T0 + 30, later)).toBe(false)
    expect(c.admit('w', T0 + 9.5, later)).toBe(false)
  })

  it('past its cap, a flood signed ahead of the clock raises the floor only to when it came: honest requests still get in', () => {
    const c = new NonceCache(3)
    const ahead = T0 + 290_000
    for (let i = 0; i < 10; i++) expect(c.admit(`flood${i}`, ahead + i, T0 + i)).toBe(true)
    expect(c.refusedUpTo).toBe(T0 + 6)
    // Signed a moment ago, by a client on time: admitted (refused as stale when the floor was the flood's timestamps).
    expect(c.admit('honest', T0 + 8, T0 + 10)).toBe(true)
    expect(c.admit('early', T0 + 5, T0 + 10)).toBe(false)
  })

  it('forgets what the window refuses anyway', () => {
    const c = new NonceCache(10)
    c.admit('a', T0, T0)
    c.admit('b', T0 + 1000, T0 + 1000)
    expect(c.admit('c', T0 + AUTH_WINDOW_MS + 500, T0 + AUTH_WINDOW_MS + 500)).toBe(true)
    expect(c.size).toBe(2)
  })
})

describe('shared-key replies', () => {
  const r: ReplyHeader = { status: 0, transno: 12, lastCommitted: 10, flags: [] }
  const rj = Buffer.from('{"attr":{"fid":1}}')

  it('a client takes the signed reply to its own request, and refuses a forged, tampered or misdirected one as an auth failure', () => {
    const { guard } = setup()
    const signer = new RequestSigner(fsKey, () => T0)
    const s = signer.sign(h, json, bulk)
    const p = guard.admitHeader(h, s.token)
    const token = guard.signReply(p, h.xid, 200, r, rj, [])
    expect(() => signer.check('n', s, h.xid, 200, r, token, rj, [])).not.toThrow()
    const refused = (fn: () => void) => {
      try {
        fn()
      } catch (e) {
        return e instanceof TransportError && e.kind === 'auth'
      }
      return false
    }
    expect(refused(() => signer.check('n', s, h.xid, 200, { ...r, status: -2 }, token, rj, []))).toBe(true)
    expect(refused(() => signer.check('n', s, h.xid, 200, r, token, Buffer.from('{"attr":{"fid":2}}'), []))).toBe(true)
    expect(refused(() => signer.check('n', s, h.xid, 200, r, undefined, rj, []))).toBe(true)
    expect(refused(() => signer.check('n', signer.sign(h, json, bulk), h.xid, 200, r, token, rj, []))).toBe(true)
    // A refusal carries no data: it is taken unsigned.
    expect(refused(() => signer.check('n', s, h.xid, 401, { ...r, status: -13 }, undefined, rj, []))).toBe(false)
    expect(reason(() => verifyReply(deriveKey(master, 'admin').secret, s.nonce, h.xid, 200, r, token, rj, []))).toBe('mac')
  })

  it("covers a reply's bulk however it is cut, and refuses other bytes, a bulk moved into the JSON, or an older version's token", () => {
    const { guard } = setup()
    const signer = new RequestSigner(fsKey, () => T0)
    const s = signer.sign(h, json, [])
    const p = guard.admitHeader(h, s.token)
    for (const data of bulks) {
      const token = guard.signReply(p, h.xid, 200, r, rj, [data])
      expect(() => verifyReply(fsKey.secret, s.nonce, h.xid, 200, r, token, rj, [data.subarray(0, 5), data.subarray(5)])).not.toThrow()
      const flipped = Buffer.from(data)
      flipped[30]! ^= 4
      expect(reason(() => verifyReply(fsKey.secret, s.nonce, h.xid, 200, r, token, rj, [flipped]))).toBe('mac')
      expect(reason(() => verifyReply(fsKey.secret, s.nonce, h.xid, 200, r, token, rj, []))).toBe('mac')
      expect(reason(() => verifyReply(fsKey.secret, s.nonce, h.xid, 200, r, token, Buffer.concat([rj, data]), []))).toBe('mac')
      expect(reason(() => verifyReply(fsKey.secret, s.nonce, h.xid, 200, r, `v1.${token.slice(3)}.${token.slice(3)}`, rj, [data]))).toBe('malformed')
      expect(reason(() => verifyReply(fsKey.secret, s.nonce, h.xid, 200, r, `v2.${token.slice(3)}`, rj, [data]))).toBe('malformed')
    }
  })
})

describe('the front with a keyed target', () => {
  function standIn(guard: Guard | null) {
    const calls: ReqHeader[] = []
    const target: FrontTarget = {
      kind: 'mdt',
      guard,
      handle: async (hh: ReqHeader) => {
        calls.push(hh)
        return { http: 200, status: 0, transno: 0, lastCommitted: 0, flags: [], body: { attr: { fid: 1 } } }
      },
    }
    return { calls, targets: new Map([[h.target, target]]) }
  }

  it('refuses an unsigned request with 401 EACCES without reading its body, and executes nothing', async () => {
    const { guard } = setup()
    const { calls, targets } = standIn(guard)
    let bodyRead = false
    const a = await answer(targets, { header: () => h, body: () => ((bodyRead = true), { json, bulk: [] }) }, silentLogger)
    expect(a.code).toBe(401)
    expect(a.header.status).toBe(-13)
    expect(bodyRead).toBe(false)
    expect(calls).toEqual([])
  })

  it('serves a signed request and signs its reply; a key of the wrong class is 403 EPERM', async () => {
    const { guard } = setup()
    const { calls, targets } = standIn(guard)
    const s = signRequest(fsKey, h, json, [], T0)
    const a = await answer(targets, { header: () => h, auth: s.token, body: () => ({ json, bulk: [] }) }, silentLogger)
    expect(a.code).toBe(200)
    expect(calls).toHaveLength(1)
    verifyReply(fsKey.secret, s.nonce, h.xid, 200, a.header, a.auth, a.body as Buffer, [])
    const again = await answer(targets, { header: () => h, auth: s.token, body: () => ({ json, bulk: [] }) }, silentLogger)
    expect([again.code, again.header.status]).toEqual([401, -13])
    const set = { ...h, target: h.target, op: 'mdt_setattr' }
    const wrong = signRequest(signingKeyOf(master, 'fs'), { ...set, op: 'ost_destroy' }, json, [], T0)
    const tgt = standIn(guard)
    tgt.targets.set(h.target, { ...tgt.targets.get(h.target)!, kind: 'ost' })
    const b = await answer(tgt.targets, { header: () => ({ ...set, op: 'ost_destroy' }), auth: wrong.token, body: () => ({ json, bulk: [] }) }, silentLogger)
    expect([b.code, b.header.status]).toEqual([403, -1])
    expect(tgt.calls).toEqual([])
  })

  it('a target without a key serves unsigned requests as before, and refuses a signed one', async () => {
    const { calls, targets } = standIn(null)
    const plain = await answer(targets, { header: () => h, body: () => ({ json, bulk: [] }) }, silentLogger)
    expect([plain.code, plain.auth]).toEqual([200, undefined])
    const signed = await answer(targets, { header: () => h, auth: sign().token, body: () => ({ json, bulk: [] }) }, silentLogger)
    expect(signed.code).toBe(401)
    expect(calls).toHaveLength(1)
  })
})

describe('key files', () => {
  it('are written 0600 and read back; one readable by group or others is refused', async () => {
    const dir = await tempDir('lproxy-keys-')
    const f = path.join(dir, 'k')
    await writeKeyFile(f, master)
    expect((await fsp.stat(f)).mode & 0o777).toBe(0o600)
    const back: KeyFile = await readKeyFile(f)
    expect(back.secret.equals(master.secret)).toBe(true)
    await expect(writeKeyFile(f, master)).rejects.toThrow(/EEXIST/)
    await fsp.chmod(f, 0o640)
    await expect(readKeyFile(f)).rejects.toThrow(/readable or writable by group or others \(mode 640\); chmod 600/)
    await fsp.writeFile(path.join(dir, 'bad'), '{"lproxy_key":1}', { mode: 0o600 })
    await expect(readKeyFile(path.join(dir, 'bad'))).rejects.toThrow(/not an lproxy key file/)
  })

  it('derive one key a class from the master; a derived key derives nothing', () => {
    const keys = (['fs', 'node', 'admin'] as const).map((c) => deriveKey(master, c).secret.toString('hex'))
    expect(new Set(keys).size).toBe(3)
    expect(deriveKey(master, 'fs').secret.equals(deriveKey(master, 'fs').secret)).toBe(true)
    expect(() => deriveKey(deriveKey(master, 'fs'), 'admin')).toThrow(/derived from the master key/)
  })
})

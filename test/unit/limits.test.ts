import { describe, it, expect, afterAll, vi } from 'vitest'
import net from 'node:net'
import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { ManualClock } from '../../src/common/clock.js'
import { silentLogger } from '../../src/common/log.js'
import { MAX_FILE_SIZE, OPS } from '../../src/protocol/ops.js'
import { Namespace, ROOT_FID } from '../../src/server/mdt/namespace.js'
import { MdtBackend } from '../../src/server/mdt/mdt.js'
import { Target } from '../../src/server/target/target.js'
import { MDT_NAME, TestClient, testTunables } from '../helpers/target.js'
import { captureLogger } from '../helpers/log.js'
import { tempDir, removeTempDirs } from '../helpers/nodes.js'
import { Client } from 'undici'
import { createFront, type FrontTarget } from '../../src/server/front.js'
import { RPC_PATH, decodeReplyHeader, encodeFrame, encodeReqHeader } from '../../src/protocol/wire.js'
import { errnoOf } from '../helpers/errno.js'
import { MsgReader, REPLY_LIMITS, encodeRequest, type ReplyMsg } from '../../src/protocol/msg.js'

afterAll(removeTempDirs)

describe('opens per export', () => {
  it('refuses a client more open handles than the cap with EMFILE, creating nothing; others and replays are not stopped', () => {
    const ns = Namespace.fresh(1)
    ns.maxOpensPerClient = 2
    const run = <R>(fn: () => R, transno = 1): R => ns.tx(fn, { transno }).result
    const grant = ns.tx(() => ns.grantRange()).redo
    ns.rangeCommitted((grant.at(-1)!.rec as { v: number }).v)
    const f = run(() => ns.create({ parent: ROOT_FID, name: 'f', type: 'reg', mode: 0o644, uid: 0, gid: 0, time: 1 }, 'a')).attr.fid
    const open = (client: string) => run(() => ns.open({ fid: f, flags: 0 }, client)).handle
    const h1 = open('a')
    open('a')
    expect(errnoOf(() => open('a'))).toBe('EMFILE')
    expect(errnoOf(() => run(() => ns.create({ parent: ROOT_FID, name: 'g', type: 'reg', mode: 0o644, uid: 0, gid: 0, time: 2, open_flags: 0 }, 'a')))).toBe('EMFILE')
    expect(ns.lookupMany(ROOT_FID, ['g'])).toEqual([null])
    open('b')
    // A replay rebuilds an open the client had: it is not refused.
    expect(run(() => ns.open({ fid: f, flags: 0 }, 'a', { handle: '00000000000000ff' }), 9).handle).toBe('00000000000000ff')
    run(() => ns.close(h1, 'a'))
    run(() => ns.close('00000000000000ff', 'a'))
    expect(open('a')).toMatch(/^[0-9a-f]{16}$/)
  })
})

describe('saved replies per export', () => {
  it('refuses changes from a client that acknowledges none of its saved replies (EDQUOT), until it does', async () => {
    const dir = await tempDir('lp-limits')
    const clock = new ManualClock()
    const mdt = new MdtBackend({ dir: path.join(dir, 'mdtfs'), clock })
    const target = await Target.open({ name: MDT_NAME, kind: 'mdt', dir, clock, log: silentLogger, backend: mdt, replayable: true, tunables: testTunables(), maxSavedReplies: 3 })
    target.start()
    const c = new TestClient(target, 'client-a')
    await c.connect()
    const mk = (name: string, lastXid = 0) => c.call('mdt_create', { parent: ROOT_FID, name, type: 'reg', mode: 0o644, uid: 0, gid: 0, time: 1 }, { lastXid })
    for (const n of ['a', 'b', 'c']) expect((await mk(n)).status).toBe(0)
    const refused = await mk('d')
    expect(refused.status).toBe(-122) // EDQUOT
    expect(refused.error).toMatch(/client-a holds 3 saved replies/)
    // Reads go on; acknowledging the replies (last_xid) lets changes in again.
    expect((await c.call('mdt_lookup', { parent: ROOT_FID, name: 'a' })).status).toBe(0)
    expect((await mk('d', c.xid)).status).toBe(0)
    await target.stop(false)
  })
})

describe('journal redo quarantine', () => {
  it('a committed record the backend cannot redo is set aside with a clear message, and the target starts with the rest', async () => {
    const dir = await tempDir('lp-quarantine')
    const clock = new ManualClock()
    const open = async (backend: MdtBackend, log = silentLogger) => {
      const t = await Target.open({ name: MDT_NAME, kind: 'mdt', dir, clock, log, backend, replayable: true, tunables: testTunables() })
      t.start()
      return t
    }
    const first = await open(new MdtBackend({ dir: path.join(dir, 'mdtfs'), clock }))
    const c = new TestClient(first, 'client-a')
    await c.connect()
    const mk = (name: string) => c.ok<{ attr: { fid: number } }>('mdt_create', { parent: ROOT_FID, name, type: 'reg', mode: 0o644, uid: 0, gid: 0, time: 1 })
    const bad = (await mk('bad')).body.attr.fid
    await mk('good')
    await c.ok('sync')
    await first.stop(false)

    class Refusing extends MdtBackend {
      override async redo(rec: Record<string, unknown>): Promise<void> {
        if (rec.k === 'ino' && rec.fid === bad) throw new Error('the backing filesystem refuses it')
        return super.redo(rec)
      }
    }
    const cap = captureLogger()
    const mdt = new Refusing({ dir: path.join(dir, 'mdtfs'), clock })
    const second = await open(mdt, cap.log)
    const q = await fsp.readdir(path.join(dir, 'quarantine'))
    expect(q.length).toBeGreaterThan(0)
    const saved = JSON.parse(await fsp.readFile(path.join(dir, 'quarantine', q[0]!), 'utf8')) as { error: string; rec: { fid: number } }
    expect(saved).toMatchObject({ error: 'the backing filesystem refuses it', rec: { fid: bad } })
    expect(cap.messages().some((m) => /journal redo of a record of transno \d+ failed \(the backing filesystem refuses it\); quarantined in/.test(m))).toBe(true)
    const c2 = new TestClient(second, 'client-a')
    await c2.connectAndRecover()
    expect((await c2.call('mdt_lookup', { parent: ROOT_FID, name: 'good' })).status).toBe(0)
    await second.stop(false)
  })
})

describe('MAX_FILE_SIZE at the schema', () => {
  it('refuses offsets past the backing filesystem limit with an EFBIG issue', () => {
    const issue = (a: unknown, op: 'ost_write' | 'ost_punch' | 'ost_read') => {
      const r = OPS[op].args.safeParse(a)
      return r.success ? undefined : (r.error.issues[0] as { params?: { errno?: string } }).params?.errno
    }
    expect(issue({ fid: 1, stripe: 0, offset: MAX_FILE_SIZE + 1 }, 'ost_write')).toBe('EFBIG')
    expect(issue({ fid: 1, stripe: 0, size: 2 ** 50 }, 'ost_punch')).toBe('EFBIG')
    expect(issue({ fid: 1, stripe: 0, offset: 2 ** 45, length: 1 }, 'ost_read')).toBe('EFBIG')
    expect(issue({ fid: 1, stripe: 0, offset: 0, niobufs: [{ offset: 0, length: 1 }, { offset: MAX_FILE_SIZE, length: 1 }] }, 'ost_write')).toBe('EFBIG')
    expect(OPS.ost_punch.args.safeParse({ fid: 1, stripe: 0, size: MAX_FILE_SIZE }).success).toBe(true)
  })
})

describe('the front', () => {
  it('answers an offset past MAX_FILE_SIZE with EFBIG before the target sees it, and tells the target the peer NID', async () => {
    const seen: Array<string | undefined> = []
    const target: FrontTarget = {
      kind: 'ost',
      handle: async (_h, _a, _r, _b, peer) => {
        seen.push(peer)
        return { http: 200, status: 0, transno: 0, lastCommitted: 0, flags: [], body: {} }
      },
    }
    const front = createFront(new Map([['spfs-OST0001', target]]), silentLogger)
    await new Promise<void>((resolve) => front.server.listen(29090, '127.0.90.1', resolve))
    const http = new Client('http://127.0.90.1:29090')
    try {
      const send = async (a: unknown) => {
        const headers = encodeReqHeader({ target: 'spfs-OST0001', op: 'ost_punch', client: 'c', connCnt: 1, xid: 1, lastXid: 0, flags: [] })
        const r = await http.request({ path: RPC_PATH, method: 'POST', headers, body: Buffer.concat(encodeFrame({ a })) })
        await r.body.dump()
        return { code: r.statusCode, ...decodeReplyHeader(r.headers as Record<string, string>) }
      }
      expect(await send({ fid: 1, stripe: 0, size: MAX_FILE_SIZE + 1 })).toMatchObject({ code: 400, status: -27, error: expect.stringMatching(/maximum file size/) })
      expect(seen).toEqual([])
      expect(await send({ fid: 1, stripe: 0, size: 1 })).toMatchObject({ code: 200, status: 0 })
      // Over HTTP, the peer's NID is on the http network.
      expect(seen).toEqual(['127.0.0.1@http'])
    } finally {
      await http.close()
      await front.close()
    }
  })

  it('has at most 64 binary requests of a connection at its targets, also when one chunk carries 200; the rest are served as they leave', async () => {
    let at = 0
    let most = 0
    const waiting: Array<() => void> = []
    const target: FrontTarget = {
      kind: 'ost',
      handle: async () => {
        most = Math.max(most, ++at)
        await new Promise<void>((resolve) => waiting.push(resolve))
        at--
        return { http: 200, status: 0, transno: 0, lastCommitted: 0, flags: [], body: {} }
      },
    }
    const front = createFront(new Map([['spfs-OST0001', target]]), silentLogger)
    await new Promise<void>((resolve) => front.server.listen(29091, '127.0.90.1', resolve))
    const sock = net.createConnection(29091, '127.0.90.1')
    const replies = new MsgReader('reply', REPLY_LIMITS)
    const xids: number[] = []
    sock.on('data', (c: Buffer) => replies.push(c, (m) => void xids.push((m as ReplyMsg).xid)))
    try {
      const reqs = Array.from({ length: 200 }, (_, i) =>
        encodeRequest({ target: 'spfs-OST0001', op: 'ost_read', client: 'c', connCnt: 1, xid: i + 1, lastXid: 0, flags: [] }, { a: { fid: 1, stripe: 0, offset: 0, length: 1 << 20 } }),
      )
      sock.write(Buffer.concat(reqs.flat()))
      await vi.waitFor(() => expect(at).toBe(64), { timeout: 5000, interval: 5 })
      // Each one answered lets the next one in, never more than 64 at once.
      while (xids.length < 200) {
        waiting.shift()?.()
        await vi.waitFor(() => expect(at + xids.length).toBe(Math.min(200, xids.length + 64)), { timeout: 5000, interval: 1 })
      }
      expect(most).toBe(64)
      expect(xids).toEqual(Array.from({ length: 200 }, (_, i) => i + 1))
    } finally {
      sock.destroy()
      for (const w of waiting) w()
      await front.close()
    }
  })
})

/**
 * The probe of issue 16 against real server processes, on both transports (@tcp binary
 * messages and @http, the same node port), with and without the filesystem's shared key: an
 * attacker with a made-up client UUID reads a root-owned 0600 file's bytes, sets its mode and
 * owner, deactivates an OST through the MGS, and connects with a mounted client's UUID. On a
 * keyed filesystem every one is refused (401 EACCES; 403 EPERM for a client key used for an
 * admin change; EALREADY for a borrowed UUID) and nothing changes on the targets; without a
 * key they all succeed, as before. A captured request sent again is refused.
 * Own net 127.0.101.1-2, ports 30010-30011.
 */
import net from 'node:net'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { request as httpRequest } from 'undici'
import { realClock } from '../../src/common/clock.js'
import { signingKeyOf, readKeyFile } from '../../src/common/keyfile.js'
import { silentLogger } from '../../src/common/log.js'
import { Mgc } from '../../src/mgc/mgc.js'
import { signRequest, type SigningKey } from '../../src/protocol/auth.js'
import { MsgReader, REPLY_LIMITS, type ReplyMsg, encodeRequest } from '../../src/protocol/msg.js'
import type { MdtAttr } from '../../src/protocol/ops.js'
import { H, RPC_PATH, encodeFrame, encodeReqHeader, type ReqHeader } from '../../src/protocol/wire.js'
import { PtlrpcClient } from '../../src/ptlrpc/client.js'
import { Import } from '../../src/ptlrpc/import.js'
import { Transport, TransportError } from '../../src/ptlrpc/transport.js'
import { NodeSet, formatMgsMdt, formatOst } from '../helpers/nodes.js'

const MDS = '127.0.101.1'
const OSS = '127.0.101.2'
const MDT = 'spfs-MDT0000'
const OST = 'spfs-OST0001'
const PARAMS = ['commit_interval=0.2', 'mmp_interval=0.1', 'sys.timeout=2']
const SECRET = Buffer.from('root only: the launch codes')

const nodes = new NodeSet()
afterAll(() => nodes.cleanup(), 30_000)

interface Outcome {
  /** The front's verdict: 200 served, 401, 403, ... */
  code: number
  status: number
  body?: unknown
  bulk?: Buffer[]
}

/** The attacker's side: RPCs built by hand with any UUID and handle, signed with `key` if given. */
class Attacker {
  private xid = Date.now() * 1000
  readonly t: Transport

  constructor(port: number, key?: SigningKey) {
    this.t = new Transport({ port, key })
  }

  async rpc(nid: string, target: string, op: string, a: unknown, o: { client?: string; handle?: string } = {}): Promise<Outcome> {
    const h: ReqHeader = { target, op, client: o.client ?? 'evil-0001', handle: o.handle, connCnt: 1, xid: ++this.xid, lastXid: 0, flags: [] }
    try {
      const r = await this.t.send(nid, h, { a }, undefined, AbortSignal.timeout(5000))
      return { code: 200, status: r.header.status, body: r.body, bulk: r.bulk }
    } catch (e) {
      if (e instanceof TransportError && e.kind === 'refused') return { code: e.code!, status: e.status! }
      throw e
    }
  }

  /** Connect to the MGS, then record the OST inactive for every client. */
  async deactivate(mds: string): Promise<Outcome> {
    const conn = await this.rpc(mds, 'MGS', 'connect', {})
    const handle = (conn.body as { handle?: string } | undefined)?.handle ?? '00000000deadbeef'
    return this.rpc(mds, 'MGS', 'mgs_set_param', { target: OST, key: 'active', value: '0' }, { handle })
  }

  /** Connect with a new UUID, find the file by name, connect to the OST, read the object. */
  async readFile(mds: string, oss: string, name: string): Promise<Outcome> {
    const conn = await this.rpc(mds, MDT, 'connect', {})
    const handle = (conn.body as { handle?: string } | undefined)?.handle ?? '00000000deadbeef'
    const look = await this.rpc(mds, MDT, 'mdt_lookup', { parent: 1, name }, { handle })
    if (look.code !== 200 || look.status !== 0) return look
    const fid = (look.body as { attr: MdtAttr }).attr.fid
    const oconn = await this.rpc(oss, OST, 'connect', {})
    const ohandle = (oconn.body as { handle?: string } | undefined)?.handle
    return this.rpc(oss, OST, 'ost_read', { fid, stripe: 0, offset: 0, length: SECRET.length }, { handle: ohandle })
  }
}

/** One request's exact bytes sent twice on the binary transport: the two replies' verdicts. */
async function sendTwiceTcp(host: string, port: number, bytes: Buffer): Promise<number[]> {
  const sock = net.connect({ host, port })
  const reader = new MsgReader('reply', REPLY_LIMITS)
  const codes: number[] = []
  try {
    await new Promise<void>((resolve, reject) => {
      sock.on('error', reject)
      sock.on('data', (c: Buffer) =>
        reader.push(c, (m) => {
          codes.push((m as ReplyMsg).code)
          if (codes.length === 1) sock.write(bytes)
          else resolve()
        }),
      )
      sock.write(bytes)
    })
  } finally {
    sock.destroy()
  }
  return codes
}

async function sendTwiceHttp(host: string, port: number, headers: Record<string, string>, frame: Buffer): Promise<number[]> {
  const codes: number[] = []
  for (let i = 0; i < 2; i++) {
    const r = await httpRequest(`http://${host}:${port}${RPC_PATH}`, { method: 'POST', headers, body: frame })
    await r.body.dump()
    codes.push(r.statusCode)
  }
  return codes
}

describe.each([
  { keyed: true, port: 30010 },
  { keyed: false, port: 30011 },
])('the probe of issue 16, keyed: $keyed', ({ keyed, port }) => {
  it(keyed ? 'every attack is refused on both transports and nothing changes' : 'without a key every attack succeeds, as before', async () => {
    const root = await nodes.tempDir('lp-auth')
    const keyFile = keyed ? path.join(root, 'master.key') : undefined
    await formatMgsMdt({ dir: path.join(root, 'mdt0'), port, params: PARAMS, keyFile })
    await formatOst({ dir: path.join(root, 'ost1'), index: 1, mgsnode: `${MDS}@tcp`, port, params: PARAMS, keyFile })
    await nodes.start({ nid: `${MDS}@tcp`, port, dir: path.join(root, 'mdt0') })
    // The OST registered with the MGS before a layout names it.
    await nodes.ospConnected(await nodes.start({ nid: `${OSS}@tcp`, port, dir: path.join(root, 'ost1') }))
    const master = keyFile ? await readKeyFile(keyFile) : null
    const fsKey = master ? signingKeyOf(master, 'fs') : undefined

    // The mounted client: a root-owned 0600 file with a secret in it.
    const victim = new PtlrpcClient(realClock, silentLogger, port, { key: fsKey })
    victim.tunables.timeout = 2
    const mdt = new Import({ client: victim, target: MDT, name: `${MDT}-mdc`, nids: [`${MDS}@tcp`], log: silentLogger })
    const ost = new Import({ client: victim, target: OST, name: `${OST}-osc`, nids: [`${OSS}@tcp`], log: silentLogger })
    const mgc = new Mgc(victim, [`${MDS}@tcp`], silentLogger)
    const attackers: Attacker[] = []
    try {
      mdt.connect()
      ost.connect()
      mgc.start()
      await Promise.all([mdt.whenFull(), ost.whenFull()])
      const made = await mdt.request<{ attr: MdtAttr }>('mdt_create', { parent: 1, name: 'secret', type: 'reg', mode: 0o600, uid: 0, gid: 0, time: Date.now(), layout: { stripe_size: 1 << 20, osts: [1] } })
      const fid = made.body.attr.fid
      // On a keyed filesystem the MDT grants the OST objects with the layout; the OST asks for the grant.
      const capa = made.body.attr.layout?.capa
      expect(capa !== undefined).toBe(keyed)
      await ost.request('ost_write', { fid, stripe: 0, offset: 0, capa }, { bulk: SECRET })
      const generation = { mdt: mdt.generation, ost: ost.generation }

      for (const lnd of ['tcp', 'http'] as const) {
        const [mds, oss] = [`${MDS}@${lnd}`, `${OSS}@${lnd}`]
        const evil = new Attacker(port)
        attackers.push(evil)
        const read = await evil.readFile(mds, oss, 'secret')
        const setattr = await evil.rpc(mds, MDT, 'mdt_setattr', { fid, mode: 0o777, uid: 65534, gid: 65534 }, { handle: '0000000000000001' })
        const deactivate = await evil.deactivate(mds)
        const borrow = await evil.rpc(mds, MDT, 'connect', {}, { client: victim.uuid })
        if (!keyed) {
          expect(read).toMatchObject({ code: 200, status: 0 })
          expect(Buffer.concat(read.bulk!)).toEqual(SECRET)
          // What the handle-less setattr could not do, a connected attacker does.
          const conn = await evil.rpc(mds, MDT, 'connect', {}, { client: `evil-${lnd}` })
          const handle = (conn.body as { handle: string }).handle
          expect(await evil.rpc(mds, MDT, 'mdt_setattr', { fid, mode: 0o777, uid: 65534 }, { client: `evil-${lnd}`, handle })).toMatchObject({ code: 200, status: 0 })
          expect(deactivate).toMatchObject({ code: 200, status: 0 })
          expect(borrow).toMatchObject({ code: 200, status: 0 })
          continue
        }
        for (const o of [read, setattr, deactivate, borrow]) expect(o).toMatchObject({ code: 401, status: -13 })

        // A holder of the clients' key may not change the configuration, nor take a UUID without its handle.
        const insider = new Attacker(port, fsKey)
        attackers.push(insider)
        expect(await insider.deactivate(mds)).toMatchObject({ code: 403, status: -1 })
        expect(await insider.rpc(mds, MDT, 'connect', {}, { client: victim.uuid })).toMatchObject({ code: 200, status: -114 })
        expect(await insider.rpc(oss, OST, 'connect', {}, { client: victim.uuid, handle: undefined })).toMatchObject({ code: 200, status: -114 })
        // Nor read the file's object: the OST wants the MDT's capability for it, which the insider was never granted.
        const oconn = await insider.rpc(oss, OST, 'connect', {}, { client: `insider-${lnd}` })
        const ohandle = (oconn.body as { handle: string }).handle
        expect(await insider.rpc(oss, OST, 'ost_read', { fid, stripe: 0, offset: 0, length: SECRET.length }, { client: `insider-${lnd}`, handle: ohandle })).toMatchObject({ code: 200, status: -13 })
        expect(await insider.rpc(oss, OST, 'ost_read', { fid, stripe: 0, offset: 0, length: SECRET.length, capa }, { client: `insider-${lnd}`, handle: ohandle })).toMatchObject({ code: 200, status: -13 })
        // A key of another filesystem is no key at all.
        const stranger = new Attacker(port, { cls: 'fs', secret: Buffer.alloc(32, 7) })
        attackers.push(stranger)
        expect(await stranger.rpc(mds, MDT, 'connect', {})).toMatchObject({ code: 401, status: -13 })
      }

      if (keyed) {
        // Nothing changed: the file as made, the OST active, the victim still connected on the same imports.
        const attr = (await mdt.request<{ attr: MdtAttr }>('mdt_getattr', { fid })).body.attr
        expect([attr.mode & 0o7777, attr.uid, attr.gid]).toEqual([0o600, 0, 0])
        expect((await mgc.config()).targets.find((t) => t.name === OST)?.active).toBe(true)
        const back = await ost.request<{ length: number }>('ost_read', { fid, stripe: 0, offset: 0, length: SECRET.length, capa })
        expect(Buffer.concat(back.bulk)).toEqual(SECRET)
        expect({ mdt: mdt.generation, ost: ost.generation }).toEqual(generation)

        // A captured request, sent again byte for byte: served once, then refused as a replay.
        const capture = (client: string): { h: ReqHeader; json: Buffer; token: string } => {
          const h: ReqHeader = { target: MDT, op: 'connect', client, connCnt: 1, xid: 1, lastXid: 0, flags: [] }
          const json = Buffer.from(JSON.stringify({ a: {} }))
          return { h, json, token: signRequest(fsKey!, h, json, [], Date.now()).token }
        }
        const c1 = capture('replayed-tcp')
        expect(await sendTwiceTcp(MDS, port, Buffer.concat(encodeRequest(c1.h, c1.json, undefined, c1.token)))).toEqual([200, 401])
        const c2 = capture('replayed-http')
        const headers = { ...encodeReqHeader(c2.h), [H.auth]: c2.token, 'content-type': 'application/x-lproxy' }
        expect(await sendTwiceHttp(MDS, port, headers, Buffer.concat(encodeFrame(c2.json)))).toEqual([200, 401])
      }
    } finally {
      await Promise.all([mdt.close(), ost.close(), mgc.close()])
      await victim.close()
      await Promise.all(attackers.map((a) => a.t.close()))
    }
  }, 60_000)
})

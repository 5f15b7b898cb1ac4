/**
 * OST capabilities against real server processes (issue 16 item 4, as Lustre's OSS
 * capabilities), on a keyed filesystem: an assembled client (MGC, MDC, LOV, OSC, llite; no
 * FUSE) reads and writes its files with the capabilities its layouts bring; a holder of the
 * clients' key with no capability, another file's, or another client's gets EACCES from the
 * OST for a root-owned 0600 file's object, and nothing of it; an MDT asked as an unprivileged
 * user hands no capability for that file; writes replayed to an OST that failed over pass.
 * Own net 127.0.135.x, port 34500.
 */
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { O_WRONLY } from '../../src/llite/file.js'
import type { Capa, MdtAttr } from '../../src/protocol/ops.js'
import { Transport } from '../../src/ptlrpc/transport.js'
import type { ReqHeader } from '../../src/protocol/wire.js'
import { REPO } from '../helpers/nodes.js'
import { sh, shFails } from '../helpers/sh.js'
import { TARGET_NAMES, Tier } from '../helpers/tier.js'

const SECRET = Buffer.from('root only: the launch codes')
const MDT = TARGET_NAMES.mdt0
const OST = TARGET_NAMES.ost1
const NOBODY = { uid: 1000, gid: 1000, groups: [] }

let tier: Tier | undefined
afterEach(async () => {
  await tier?.down()
  tier = undefined
}, 30_000)

/** A client of its own making, holding the clients' key: any UUID, any argument. */
class Insider {
  private xid = Date.now() * 1000
  private readonly handles = new Map<string, string>()

  constructor(
    readonly t: Transport,
    readonly uuid: string,
  ) {}

  async rpc(nid: string, target: string, op: string, a: unknown): Promise<{ status: number; body: unknown; bulk: Buffer[] }> {
    if (op !== 'connect' && !this.handles.has(target)) {
      const c = await this.rpc(nid, target, 'connect', {})
      this.handles.set(target, (c.body as { handle: string }).handle)
    }
    const h: ReqHeader = { target, op, client: this.uuid, handle: this.handles.get(target), connCnt: 1, xid: ++this.xid, lastXid: 0, flags: [] }
    const r = await this.t.send(nid, h, { a }, undefined, AbortSignal.timeout(5000))
    return { status: r.header.status, body: r.body, bulk: r.bulk }
  }
}

describe('OST capabilities on a keyed filesystem', () => {
  it('the client reads and writes with them; without a valid one of its own, the OST serves nothing', async () => {
    tier = await Tier.up({ net: '127.0.135', port: 34500, timeout: 2, keyed: true })
    const a = await tier.client('a')
    await a.mkdir('/pub')
    await a.llite.setattr(await a.fid('/pub'), { mode: 0o777 })
    const made = await a.write('/secret', SECRET)
    await a.llite.setattr(made.fid, { mode: 0o600 })
    expect(await a.read('/secret')).toEqual(SECRET)
    expect(made.layout?.capa).toMatchObject({ fid: made.fid, ops: 'rw' })

    const oss = tier.nid('oss1')
    const mds = tier.nid('mds1')
    const t = new Transport({ port: tier.o.port, key: tier.key })
    try {
      const evil = new Insider(t, 'evil-0001')
      const read = (capa?: Capa, fid = made.fid) => evil.rpc(oss, OST, 'ost_read', { fid, stripe: 0, offset: 0, length: SECRET.length, capa })
      // No capability at all.
      expect(await read()).toMatchObject({ status: -13, bulk: [] })
      // Asked as an unprivileged user, the MDT answers the lookup but grants nothing of a 0600 file.
      const look = await evil.rpc(mds, MDT, 'mdt_lookup', { cred: NOBODY, parent: 1, name: 'secret' })
      expect(look.status).toBe(0)
      expect((look.body as { attr: MdtAttr }).attr.layout).toBeDefined()
      expect((look.body as { attr: MdtAttr }).attr.layout!.capa).toBeUndefined()
      // Its own file's capability, as is and with the FID rewritten.
      const own = await evil.rpc(mds, MDT, 'mdt_create', {
        cred: NOBODY, parent: await a.fid('/pub'), name: 'mine', type: 'reg', mode: 0o644, uid: 1000, gid: 1000, time: Date.now(), layout: { stripe_size: 1 << 20, osts: [1] },
      })
      const mine = (own.body as { attr: MdtAttr }).attr.layout!.capa!
      expect(mine).toMatchObject({ ops: 'rw' })
      expect(await evil.rpc(oss, OST, 'ost_write', { fid: mine.fid, stripe: 0, offset: 0, capa: mine })).toMatchObject({ status: 0 })
      expect(await read(mine)).toMatchObject({ status: -13, bulk: [] })
      expect(await read({ ...mine, fid: made.fid })).toMatchObject({ status: -13, bulk: [] })
      // The victim's own capability (seen on the wire), under another client's UUID.
      expect(await read(made.layout!.capa)).toMatchObject({ status: -13, bulk: [] })
      // Nor may it change the object: a punch and a write with the victim's capability.
      expect(await evil.rpc(oss, OST, 'ost_punch', { fid: made.fid, stripe: 0, size: 0, capa: made.layout!.capa })).toMatchObject({ status: -13 })
      expect(await evil.rpc(oss, OST, 'ost_write', { fid: made.fid, stripe: 0, offset: 0, capa: { ...mine, fid: made.fid } })).toMatchObject({ status: -13 })
    } finally {
      await t.close()
    }
    // Nothing changed.
    expect(await tier.fresh((c) => c.read('/secret'))).toEqual(SECRET)
  }, 60_000)

  it('writes replayed to an OST that failed over still pass with their capabilities', async () => {
    tier = await Tier.up({ net: '127.0.135', port: 34501, timeout: 2, keyed: true })
    const a = await tier.client('a')
    await a.write('/f', Buffer.alloc(8192, 0x61))
    await tier.barrier('ost1')
    const later = Buffer.alloc(8192, 0x62)
    const fd = await a.llite.open(await a.fid('/f'), O_WRONLY)
    await a.llite.write(fd, later, 4096)
    await a.llite.release(fd)
    await tier.failover('ost1')
    const view = await tier.recovered('ost1')
    expect(view.replayed_requests).toBeGreaterThan(0)
    expect(a.evictedBy(OST)).toBe(false)
    const want = Buffer.concat([Buffer.alloc(4096, 0x61), later])
    expect(await a.read('/f')).toEqual(want)
    expect(await tier.fresh((c) => c.read('/f'))).toEqual(want)

    // An admin verb by target name asks the keyed MGS with --key-file (any of its keys), and cannot without.
    const cli = `node ${path.join(REPO, 'dist/cli/main.js')} recovery-status ost1 --mgsnode ${tier.mgsnode} --port ${tier.o.port}`
    expect(await sh(`${cli} --key-file ${path.join(tier.root, 'master.key')}`)).toMatch(new RegExp(`obdfilter\\.${OST}\\.recovery_status=\\nstatus: COMPLETE`))
    expect(await shFails(cli)).toMatch(/^lproxy: the MGS at .* refused the connection as not authenticated: .*--key-file/m)
  }, 60_000)
})

/**
 * Real server nodes reached by `@http` NIDs (undici to the node's front), on this file's own
 * net 127.0.88.11-12, port 28810: a client connects through the MGS's NIDs, writes to the OST
 * without a commit, the OSS is SIGKILLed and restarted, and the client's replay over HTTP
 * brings the writes back; then a client on the same node's `@tcp` NID (binary messages, the
 * same port) reads them as well.
 */
import { randomBytes } from 'node:crypto'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { clientImports } from '../helpers/imports.js'
import { NodeSet, formatMgsMdt, formatOst } from '../helpers/nodes.js'

const PORT = 28810
const MDS = '127.0.88.11@http'
const OSS = '127.0.88.12@http'
const OST = 'spfs-OST0001'
// No commit on its own during the test: the writes live only in the OSS's memory until replayed.
const PARAMS = ['commit_interval=600', 'mmp_interval=0.1', 'sys.timeout=2']

const nodes = new NodeSet()
afterAll(() => nodes.cleanup(), 30_000)

function client(ossNid: string) {
  return clientImports({ port: PORT, mdsNid: MDS, ossNid })
}

describe('@http NIDs', () => {
  it("serve a client through a node crash: the OST's uncommitted writes come back by replay over HTTP, and read the same over @tcp", async () => {
    const root = await nodes.tempDir('lp-http')
    const mdsDir = path.join(root, 'mdt0')
    const ossDir = path.join(root, 'ost1')
    await formatMgsMdt({ dir: mdsDir, port: PORT, params: PARAMS })
    await formatOst({ dir: ossDir, index: 1, mgsnode: MDS, port: PORT, params: PARAMS })
    await nodes.start({ nid: MDS, port: PORT, dir: mdsDir })
    let oss = await nodes.start({ nid: OSS, port: PORT, dir: ossDir })
    // A new connection commits the OST (a client must be known durably): the MDT's OSP
    // connects first, so that nothing commits the writes below.
    await nodes.ospConnected(oss)

    const cl = client(OSS)
    const data = [randomBytes(100_000), randomBytes(3 << 20), randomBytes(5)]
    try {
      cl.ost.connect()
      cl.mdt.connect()
      await Promise.all([cl.ost.whenFull(), cl.mdt.whenFull()])
      // A layout on ost1: an object no file's layout names is an orphan, which the MDT's
      // orphan cleanup destroys when its OSP reconnects to the restarted OSS.
      const layout = { stripe_size: 1 << 20, osts: [1] }
      const created = await cl.mdt.request<{ attr: { fid: number } }>('mdt_create', { parent: 1, name: 'f', type: 'reg', mode: 0o644, uid: 0, gid: 0, time: Date.now(), layout })
      const fid = created.body.attr.fid
      let off = 0
      for (const d of data) {
        await cl.ost.request('ost_write', { fid, stripe: 0, offset: off }, { bulk: d })
        off += d.length
      }
      // Kept for replay: nothing was committed.
      expect(cl.ost.replayList).toHaveLength(3)
      const whole = Buffer.concat(data)

      await oss.kill9()
      oss = await nodes.start({ nid: OSS, port: PORT, dir: ossDir })
      expect(oss.targets).toEqual([OST])
      // The read waits for the reconnect and the replay; what it reads is what was written.
      const r = await cl.ost.request<{ length: number }>('ost_read', { fid, stripe: 0, offset: 0, length: whole.length })
      expect(r.body.length).toBe(whole.length)
      expect(Buffer.compare(Buffer.concat(r.bulk), whole)).toBe(0)

      const viaTcp = client(OSS.replace('@http', '@tcp'))
      try {
        viaTcp.ost.connect()
        await viaTcp.ost.whenFull()
        const t = await viaTcp.ost.request<{ length: number }>('ost_read', { fid, stripe: 0, offset: 0, length: whole.length })
        expect(Buffer.compare(Buffer.concat(t.bulk), whole)).toBe(0)
      } finally {
        await viaTcp.close()
      }
    } finally {
      await cl.close()
    }
  }, 90_000)
})

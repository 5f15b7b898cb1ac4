/**
 * Mutual TLS on real server nodes (this file's net 127.0.109.0/24, port 31000): an MGS+MDT
 * node and an OSS with per-node certificates from one CA, targets formatted tls=required.
 * A client with a certificate from the CA is served on @tcp and @http NIDs, through the
 * client stack's mount options too, and the nodes reach each other over TLS (registration,
 * the MDT's OSP). Plaintext, no certificate, a certificate from another CA, a node the client
 * cannot trust or whose certificate names another address: each is refused at once with an
 * error that says so, never left to the deadline.
 */
import { randomBytes } from 'node:crypto'
import { promises as fsp } from 'node:fs'
import path from 'node:path'
import tls from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ClientFs } from '../../src/client/fs.js'
import { parseOptions } from '../../src/client/options.js'
import type { NodeStatus } from '../../src/cluster/admin.js'
import { refByName } from '../../src/cluster/resolve.js'
import { issueCert, makeCa } from '../../src/common/certs.js'
import { realClock } from '../../src/common/clock.js'
import { silentLogger } from '../../src/common/log.js'
import { loadTls, type TlsFiles, type TlsMaterial } from '../../src/common/tls.js'
import { MSG_MAGIC } from '../../src/protocol/msg.js'
import { Transport, TransportError } from '../../src/ptlrpc/transport.js'
import { MDT0 as MDT, OST1 as OST, clientImports } from '../helpers/imports.js'
import { NodeSet, NodeStartError, formatMgsMdt, formatOst, type NodeProc } from '../helpers/nodes.js'
import { pollUntil } from '../helpers/poll.js'

const PORT = 31000
const MDS = '127.0.109.1'
const OSS = '127.0.109.2'
/** A node serving with the MDS's certificate: its address is not the one the certificate names. */
const IMPOSTOR = '127.0.109.3'
const PLAIN = '127.0.109.4'
const PARAMS = ['mmp_interval=0.1', 'sys.timeout=2', 'tls=required']
/** Refusals come at once: far sooner than this deadline. */
const DEADLINE_MS = 5000

const nodes = new NodeSet()
afterAll(() => nodes.cleanup(), 30_000)

let root: string
let files: { mds: TlsFiles; oss: TlsFiles; client: TlsFiles; stranger: TlsFiles }
let client: TlsMaterial
let stranger: TlsMaterial
let oss: NodeProc

beforeAll(async () => {
  root = await nodes.tempDir('lp-tls')
  const ca = await makeCa(path.join(root, 'pki'), 'spfs-ca')
  const other = await makeCa(path.join(root, 'other'), 'other-ca')
  files = {
    mds: await issueCert(ca, 'mds', [MDS]),
    oss: await issueCert(ca, 'oss', [OSS]),
    client: await issueCert(ca, 'client', []),
    stranger: await issueCert(other, 'stranger', []),
  }
  client = await loadTls(files.client)
  stranger = await loadTls(files.stranger)
  await formatMgsMdt({ dir: path.join(root, 'mdt0'), port: PORT, params: PARAMS })
  await formatOst({ dir: path.join(root, 'ost1'), index: 1, mgsnode: `${MDS}@tcp`, port: PORT, params: PARAMS })
  await nodes.start({ nid: `${MDS}@tcp`, port: PORT, dir: path.join(root, 'mdt0'), tls: files.mds })
  oss = await nodes.start({ nid: `${OSS}@tcp`, port: PORT, dir: path.join(root, 'ost1'), tls: files.oss })
  // The OST registered with the MGS before a layout names it.
  await nodes.ospConnected(oss)
}, 60_000)

/** One request straight on a transport: how it fails, and how soon. */
async function attempt(material: TlsMaterial | undefined, nid: string): Promise<{ error: TransportError; ms: number }> {
  const t = new Transport({ port: PORT, tls: material })
  const t0 = Date.now()
  try {
    const h = { target: MDT, op: 'ping', client: 'tls-probe', connCnt: 1, xid: 1, lastXid: 0, flags: [] }
    await t.send(nid, h, { a: {} }, undefined, AbortSignal.timeout(DEADLINE_MS))
    throw new Error(`${nid} served a request it should have refused`)
  } catch (e) {
    if (!(e instanceof TransportError)) throw e
    return { error: e, ms: Date.now() - t0 }
  } finally {
    await t.close()
  }
}

describe('mutual TLS', () => {
  it('serves a client with a certificate from the CA on @tcp and @http, and the nodes talk to each other over TLS', async () => {
    // Registration with the MGS and the MDT's OSP connection to the OST go node to node.
    await pollUntil(
      'the MDT to connect to the OST',
      async () => {
        const st = await oss.admin<NodeStatus>({ cmd: 'status' })
        return st.tls && st.mounts.some((m) => m.targets.some((t) => t.clients.some((c) => /mdtlov/.test(c.uuid) && c.connected)))
      },
      15_000,
      100,
    )
    const data = randomBytes(3 << 20)
    for (const net of ['tcp', 'http'] as const) {
      const cl = clientImports({ port: PORT, mdsNid: `${MDS}@${net}`, ossNid: `${OSS}@${net}`, tls: client })
      try {
        cl.ost.connect()
        cl.mdt.connect()
        await Promise.all([cl.ost.whenFull(), cl.mdt.whenFull()])
        const layout = { stripe_size: 1 << 20, osts: [1] }
        const made = await cl.mdt.request<{ attr: { fid: number } }>('mdt_create', { parent: 1, name: `f-${net}`, type: 'reg', mode: 0o644, uid: 0, gid: 0, time: Date.now(), layout })
        const fid = made.body.attr.fid
        await cl.ost.request('ost_write', { fid, stripe: 0, offset: 0 }, { bulk: data })
        const r = await cl.ost.request<{ length: number }>('ost_read', { fid, stripe: 0, offset: 0, length: data.length })
        expect(Buffer.compare(Buffer.concat(r.bulk), data)).toBe(0)
      } finally {
        await cl.close()
      }
    }
    // The mount's path: `-o tls,ca=,cert=,key=` through the MGS's configuration to every target.
    const fs = await ClientFs.connect({
      mgsnode: `${MDS}@tcp`,
      port: PORT,
      options: parseOptions([`tls,ca=${files.client.ca},cert=${files.client.cert},key=${files.client.key}`, 'timeout=2']),
      clock: realClock,
      log: silentLogger,
    })
    try {
      expect(fs.config.targets.map((t) => t.name)).toEqual(expect.arrayContaining([MDT, OST]))
    } finally {
      await fs.close()
    }
    // An admin command's one exchange with the MGS (barrier ost1 --mgsnode ... --tls-*).
    expect(await refByName('ost1', `${MDS}@tcp`, PORT, { tls: client })).toMatchObject({ nid: `${OSS}@tcp`, select: { target: OST } })
  }, 60_000)

  it('refuses plaintext, a certificate from another CA, and a node the client cannot trust, at once and saying why', async () => {
    for (const net of ['tcp', 'http'] as const) {
      const nid = `${MDS}@${net}`
      const plain = await attempt(undefined, nid)
      expect(plain.error.message).toMatch(/requires TLS/)
      // A binary client learns it as the reason its connection closed; an HTTP one from a 403.
      expect(net === 'tcp' ? plain.error.kind : plain.error.code).toBe(net === 'tcp' ? 'conn' : 403)
      const foreign = await attempt({ ...stranger, ca: client.ca }, nid)
      expect(foreign.error.kind).toBe('conn')
      expect(foreign.error.message).toMatch(/closed|certificate/)
      const untrusted = await attempt({ ...client, ca: stranger.ca }, nid)
      expect(untrusted.error.message).toMatch(/SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY/)
      for (const r of [plain, foreign, untrusted]) expect(r.ms).toBeLessThan(DEADLINE_MS / 2)
    }
    // A mount without -o tls gives up on the MGS with the node's reason.
    const mount = ClientFs.connect({ mgsnode: `${MDS}@tcp`, port: PORT, options: parseOptions(['timeout=2']), clock: realClock, log: silentLogger })
    await expect(mount).rejects.toThrow(/cannot reach the MGS .*requires TLS/)
  }, 40_000)

  it('refuses a TLS client without a certificate: the connection ends with no answer', async () => {
    for (const first of [Buffer.from([MSG_MAGIC >>> 24, 0, 0, 0]), Buffer.from('POST /rpc HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n')]) {
      const sock = tls.connect({ host: MDS, port: PORT, ca: client.ca, minVersion: 'TLSv1.3' })
      const got: Buffer[] = []
      sock.on('data', (c: Buffer) => got.push(c))
      const ended = new Promise<string>((resolve) => {
        sock.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message))
        sock.once('close', () => resolve('closed'))
      })
      sock.write(first)
      expect(await ended).toMatch(/CERTIFICATE_REQUIRED|closed|ECONNRESET/)
      expect(Buffer.concat(got).length).toBe(0)
      sock.destroy()
    }
  }, 15_000)

  it("refuses a node whose certificate names another address, and a tls=required target on a plaintext node", async () => {
    const dir = path.join(root, 'ost2')
    await formatOst({ dir, index: 2, mgsnode: `${MDS}@tcp`, port: PORT, params: PARAMS })
    const impostor = await nodes.start({ nid: `${IMPOSTOR}@tcp`, port: PORT, dir, tls: files.mds })
    for (const net of ['tcp', 'http'] as const) {
      const r = await attempt(client, `${IMPOSTOR}@${net}`)
      expect(r.error.message).toMatch(/ERR_TLS_CERT_ALTNAME_INVALID.*127\.0\.109\.3/)
    }
    await impostor.stop()
    const err = await nodes.start({ nid: `${PLAIN}@tcp`, port: PORT, dir }).then(
      () => null,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(NodeStartError)
    expect((err as NodeStartError).errno).toBe('EACCES')
    expect((err as Error).message).toMatch(/tls=required/)
  }, 30_000)

  it('refuses to start a node whose key others can read', async () => {
    const loose = path.join(root, 'loose.key')
    await fsp.copyFile(files.oss.key, loose)
    await fsp.chmod(loose, 0o644)
    const err = await nodes.start({ nid: `${PLAIN}@tcp`, port: PORT, dir: path.join(root, 'ost2'), tls: { ...files.oss, key: loose } }).then(
      () => null,
      (e: unknown) => e,
    )
    expect((err as Error).message).toMatch(/readable by others.*chmod 600/)
  }, 15_000)
})

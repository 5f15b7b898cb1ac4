/**
 * TLS material and options: what is refused before any connection is made. The certificates
 * are made with openssl in a temp dir, as `cluster up --tls` makes them.
 */
import { promises as fsp } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { X509Certificate } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseOptions } from '../../src/client/options.js'
import { issueCert, makeCa, type Ca } from '../../src/common/certs.js'
import { loadTls, tlsFiles, type TlsFiles } from '../../src/common/tls.js'

let dir: string
let ca: Ca
let node: TlsFiles
let foreign: TlsFiles

beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lp-tls-unit-'))
  ca = await makeCa(path.join(dir, 'ca'), 'spfs-ca')
  node = await issueCert(ca, 'oss1', ['127.0.109.11'])
  foreign = await issueCert(await makeCa(path.join(dir, 'other'), 'other-ca'), 'oss1', ['127.0.109.11'])
})
afterAll(() => fsp.rm(dir, { recursive: true, force: true }))

describe('certificates made for a cluster', () => {
  it('are 0600, signed by the CA, and name the node by an IP SAN', async () => {
    for (const f of [ca.cert, ca.key, node.cert, node.key]) expect((await fsp.stat(f)).mode & 0o777).toBe(0o600)
    const cert = new X509Certificate(await fsp.readFile(node.cert))
    expect(cert.subjectAltName).toBe('IP Address:127.0.109.11')
    expect(cert.checkIssued(new X509Certificate(await fsp.readFile(ca.cert)))).toBe(true)
    expect((await loadTls(node)).name).toBe('oss1')
  })
  it('refuses names and addresses that are not', async () => {
    await expect(issueCert(ca, '../x', [])).rejects.toThrow(/invalid certificate name/)
    await expect(issueCert(ca, 'n', ['not-an-ip'])).rejects.toThrow(/invalid certificate address/)
  })
})

describe('loading TLS material', () => {
  it('refuses a key others can read, a key of another certificate, a certificate of another CA, a missing file', async () => {
    const loose = path.join(dir, 'loose.key')
    await fsp.copyFile(node.key, loose)
    await fsp.chmod(loose, 0o640)
    await expect(loadTls({ ...node, key: loose })).rejects.toThrow(/readable by others \(mode 640\); chmod 600/)
    await expect(loadTls({ ...node, key: foreign.key })).rejects.toThrow(/is not the key of the certificate/)
    await expect(loadTls({ ...foreign, ca: ca.cert })).rejects.toThrow(/is not signed by the CA/)
    await expect(loadTls({ ...node, cert: path.join(dir, 'none.crt') })).rejects.toThrow(/cannot read the TLS certificate .*ENOENT/)
    await expect(loadTls({ ...node, ca: node.key })).rejects.toThrow(/is not a PEM CA certificate/)
  })
  it('takes all three files or none', () => {
    expect(tlsFiles({}, 'x')).toBeUndefined()
    expect(() => tlsFiles({ ca: 'a', cert: 'b' }, '--tls-ca, --tls-cert and --tls-key')).toThrow(/TLS needs all three of --tls-ca/)
  })
})

describe('mount options: tls', () => {
  it('takes tls with ca=, cert= and key=, made absolute', () => {
    const o = parseOptions(['tls,ca=pki/ca.crt,cert=/p/c.crt,key=/p/c.key', 'timeout=5'])
    expect(o.tls).toEqual({ ca: path.resolve('pki/ca.crt'), cert: '/p/c.crt', key: '/p/c.key' })
    expect(parseOptions(['timeout=5']).tls).toBeUndefined()
  })
  it('refuses tls without its files, files without tls, and a path left empty', () => {
    expect(() => parseOptions(['tls'])).toThrow(/tls needs ca=PATH, cert=PATH and key=PATH/)
    expect(() => parseOptions(['tls,ca=/a,cert=/b'])).toThrow(/all three/)
    expect(() => parseOptions(['ca=/a,cert=/b,key=/c'])).toThrow(/go with tls/)
    expect(() => parseOptions(['tls,ca=,cert=/b,key=/c'])).toThrow(/expected ca=<path>/)
    expect(() => parseOptions(['tls=1'])).toThrow(/takes no value/)
  })
})

import { execFile } from 'node:child_process'
import { promises as fsp } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { promisify } from 'node:util'
import type { TlsFiles } from './tls.js'

/**
 * A small CA for one filesystem and the per-node certificates it signs (`cluster up --tls`,
 * the selftest). node:crypto reads X.509 but cannot sign it, so openssl does the signing, as
 * a site would by hand; it is on every server, and no JavaScript crypto library is needed.
 * Keys are P-256: fast to make and to handshake with. Every file is 0600 in a 0700 directory.
 */
const run = promisify(execFile)
const OPENSSL = 'openssl'
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
const NAME_RE = /^[A-Za-z0-9._-]{1,64}$/

export interface Ca {
  cert: string
  key: string
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run(OPENSSL, args)
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string }
    throw new Error(err.code === 'ENOENT' ? 'openssl is not installed: it makes the TLS certificates' : `openssl failed: ${(err.stderr ?? err.message).trim().split('\n').pop()}`)
  }
}

async function tighten(files: string[]): Promise<void> {
  await Promise.all(files.map((f) => fsp.chmod(f, 0o600)))
}

/** A CA in `dir` (ca.crt, ca.key), ten years. */
export async function makeCa(dir: string, name: string): Promise<Ca> {
  if (!NAME_RE.test(name)) throw new Error(`invalid CA name '${name}'`)
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 })
  const ca = { cert: path.join(dir, 'ca.crt'), key: path.join(dir, 'ca.key') }
  await openssl(['req', '-x509', ...EC, '-keyout', ca.key, '-out', ca.cert, '-days', '3650', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  await tighten([ca.cert, ca.key])
  return ca
}

/**
 * `<name>.crt` and `<name>.key` in the CA's directory, signed by it, for both ends of a
 * connection (a node is a server, and a client of the MGS and OSTs). `ips` become IP SANs:
 * what a client checks a node's certificate against, as NIDs are addresses.
 */
export async function issueCert(ca: Ca, name: string, ips: string[]): Promise<TlsFiles> {
  if (!NAME_RE.test(name)) throw new Error(`invalid certificate name '${name}'`)
  for (const ip of ips) if (!net.isIP(ip)) throw new Error(`invalid certificate address '${ip}'`)
  const dir = path.dirname(ca.cert)
  const out = { ca: ca.cert, cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) }
  const san = ips.length ? ['-addext', `subjectAltName=${ips.map((ip) => `IP:${ip}`).join(',')}`] : []
  await openssl(['req', '-x509', '-CA', ca.cert, '-CAkey', ca.key, ...EC, '-keyout', out.key, '-out', out.cert, '-days', '825', '-subj', `/CN=${name}`,
    ...san, '-addext', 'basicConstraints=critical,CA:FALSE', '-addext', 'extendedKeyUsage=serverAuth,clientAuth'])
  await tighten([out.cert, out.key])
  return out
}

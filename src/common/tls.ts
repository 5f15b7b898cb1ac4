import { promises as fsp } from 'node:fs'
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto'
import type tls from 'node:tls'
import { LpError } from '../protocol/errno.js'

/**
 * TLS material of one node or client: the filesystem's CA, its own certificate and key.
 * Mutual TLS both ways: a server asks every peer for a certificate signed by the CA, a client
 * checks that the server's certificate is signed by the CA and names the NID's address (an
 * IP SAN: NIDs are addresses, and SNI never carries an IP, so no servername is sent and
 * node's check compares the address with the certificate's IP SANs).
 */
export interface TlsFiles {
  ca: string
  cert: string
  key: string
}

export interface TlsMaterial {
  ca: Buffer
  cert: Buffer
  key: Buffer
  /** The certificate's subject CN, for logs. */
  name: string
}

/** Our own protocols at both ends: nothing older to talk to. */
const MIN_VERSION = 'TLSv1.3'

/** The three paths, all or none (`what` names the options in the error). */
export function tlsFiles(o: { ca?: string; cert?: string; key?: string }, what: string): TlsFiles | undefined {
  const given = [o.ca, o.cert, o.key].filter((v) => v !== undefined && v !== '').length
  if (given === 0) return undefined
  if (given < 3) throw new LpError('EINVAL', `TLS needs all three of ${what}`)
  return { ca: o.ca!, cert: o.cert!, key: o.key! }
}

/**
 * Read and check the files: the key readable by its owner only (as ssh refuses a loose key),
 * the certificate signed by the CA, current, and matching the key. Every failure is one line
 * naming the file.
 */
export async function loadTls(f: TlsFiles): Promise<TlsMaterial> {
  const read = async (file: string, what: string): Promise<Buffer> => {
    try {
      return await fsp.readFile(file)
    } catch (e) {
      throw new LpError('EINVAL', `cannot read the TLS ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
  }
  const st = await fsp.stat(f.key).catch(() => null)
  if (st && (st.mode & 0o077) !== 0)
    throw new LpError('EINVAL', `TLS key ${f.key} is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`)
  const [ca, cert, key] = await Promise.all([read(f.ca, 'CA'), read(f.cert, 'certificate'), read(f.key, 'key')])
  const caCert = parse(ca, f.ca, 'CA certificate')
  const own = parse(cert, f.cert, 'certificate')
  let pkey: KeyObject
  try {
    pkey = createPrivateKey(key)
  } catch (e) {
    throw new LpError('EINVAL', `${f.key} is not a PEM private key: ${(e as Error).message}`)
  }
  if (!own.checkPrivateKey(pkey)) throw new LpError('EINVAL', `${f.key} is not the key of the certificate ${f.cert}`)
  if (!own.verify(caCert.publicKey)) throw new LpError('EINVAL', `${f.cert} is not signed by the CA ${f.ca}`)
  const now = Date.now()
  for (const [c, file] of [[caCert, f.ca], [own, f.cert]] as const)
    if (now < Date.parse(c.validFrom) || now > Date.parse(c.validTo)) throw new LpError('EINVAL', `${file} is valid from ${c.validFrom} to ${c.validTo}, not now`)
  return { ca, cert, key, name: /CN=([^\n,]+)/.exec(own.subject)?.[1] ?? own.subject }
}

function parse(pem: Buffer, file: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem)
  } catch (e) {
    throw new LpError('EINVAL', `${file} is not a PEM ${what}: ${(e as Error).message}`)
  }
}

/** Added to a bare close on a TLS connection: a node that refuses a client's certificate just closes it (TLS 1.3 verifies it after the handshake). */
export const TLS_CLOSE_HINT = ' (TLS: the peer closes on a certificate it refuses; its log says why)'

/** A node's front: a peer without a certificate signed by the CA is refused in the handshake. */
export function serverTlsOptions(m: TlsMaterial): tls.TlsOptions {
  return { ca: m.ca, cert: m.cert, key: m.key, requestCert: true, rejectUnauthorized: true, minVersion: MIN_VERSION }
}

/** A client's connections (tls.connect, undici's connect): the server checked against the CA and the NID's address. */
export function clientTlsOptions(m: TlsMaterial): tls.ConnectionOptions {
  return { ca: m.ca, cert: m.cert, key: m.key, rejectUnauthorized: true, minVersion: MIN_VERSION }
}

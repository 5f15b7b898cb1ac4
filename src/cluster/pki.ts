import { existsSync, promises as fsp } from 'node:fs'
import path from 'node:path'
import { issueCert, makeCa } from '../common/certs.js'
import { nidHost } from '../protocol/nid.js'
import { CLIENT_CERT, TLS_DIR } from './layout.js'
import type { LocalCluster } from './local.js'

/**
 * The certificates of a cluster made with `up --tls`, in <dir>/tls: its CA, one certificate
 * per node naming the node's address (what clients check), and the mount's. Made once, and
 * again on --reformat (the net may have changed).
 */
export async function ensureClusterPki(lc: LocalCluster, remake: boolean): Promise<void> {
  const dir = path.join(lc.dir, TLS_DIR)
  if (!remake && existsSync(path.join(dir, 'ca.crt'))) return
  await fsp.rm(dir, { recursive: true, force: true })
  const ca = await makeCa(dir, `${lc.cf.fsname}-ca`)
  await Promise.all([...lc.nodeNames.map((n) => issueCert(ca, n, [nidHost(lc.nid(n))])), issueCert(ca, CLIENT_CERT, [])])
}

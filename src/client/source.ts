import { LpError } from '../protocol/errno.js'
import { FSNAME_RE } from '../protocol/names.js'
import { NidError, nidList } from '../protocol/nid.js'

/**
 * The device of an lproxy mount, as mount.lustre names it: `mgsnode[:mgsnode]:/fsname`
 * (`/etc/fstab`'s first field, and what `findmnt` shows as the source).
 */
export interface MountSource {
  mgsnode: string
  fsname: string
}

export function parseMountSource(spec: string): MountSource {
  const cut = spec.lastIndexOf(':/')
  if (cut <= 0) throw new LpError('EINVAL', `invalid source '${spec}': expected mgsnode[:mgsnode]:/fsname (e.g. 10.0.0.1@tcp:10.0.0.2@tcp:/spfs)`)
  const mgsnode = spec.slice(0, cut)
  const fsname = spec.slice(cut + 2)
  if (!FSNAME_RE.test(fsname)) throw new LpError('EINVAL', `invalid source '${spec}': filesystem name '${fsname}' is not 1-8 letters, digits or '_'`)
  try {
    nidList(mgsnode)
  } catch (e) {
    if (e instanceof NidError) throw new LpError('EINVAL', `invalid source '${spec}': ${e.message}`)
    throw e
  }
  return { mgsnode, fsname }
}

export function mountSource(mgsnode: string, fsname: string): string {
  return `${mgsnode}:/${fsname}`
}

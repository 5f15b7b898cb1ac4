/**
 * Target naming as Lustre does it: `<fsname>-MDT0000`, `<fsname>-OST0001`, `MGS`;
 * admins may say `mdt0` / `ost2` for short.
 */
export type TargetKind = 'mgs' | 'mdt' | 'ost'

export interface TargetId {
  kind: TargetKind
  index: number
}

export const FSNAME_RE = /^[a-z0-9_]{1,8}$/i
export const MAX_TARGET_INDEX = 0xffff

export function targetName(fsname: string, t: TargetId): string {
  if (t.kind === 'mgs') return 'MGS'
  // Lustre's "%s-OST%04x": the index in lower-case hex.
  return `${fsname}-${t.kind.toUpperCase()}${t.index.toString(16).padStart(4, '0')}`
}

export function shortName(t: TargetId): string {
  return t.kind === 'mgs' ? 'mgs' : `${t.kind}${t.index}`
}

/** Parse `ost2`, `OST0002`, `spfs-OST0002` (and the same for mdt); null when not a target name. */
export function parseTargetName(s: string): TargetId | null {
  if (/^mgs$/i.test(s)) return { kind: 'mgs', index: 0 }
  let m = /^(?:[A-Za-z0-9_]{1,8}-)?(MDT|OST)([0-9A-Fa-f]{4})$/i.exec(s)
  if (m) return { kind: m[1]!.toLowerCase() as TargetKind, index: parseInt(m[2]!, 16) }
  m = /^(mdt|ost)(\d+)$/i.exec(s)
  if (m) {
    const index = parseInt(m[2]!, 10)
    if (index > MAX_TARGET_INDEX) return null
    return { kind: m[1]!.toLowerCase() as TargetKind, index }
  }
  return null
}

export function targetUuid(name: string): string {
  return `${name}_UUID`
}

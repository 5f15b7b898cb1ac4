import { parseListenAddress, type ListenAddress } from '../common/listen.js'
import path from 'node:path'
import { tlsFiles, type TlsFiles } from '../common/tls.js'
import type { FuseKind } from '../fuse/binding.js'
import { LpError } from '../protocol/errno.js'
import { defaultOf, param, parseParam } from '../common/registry.js'

/** `-o` mount options, as `mount -t lustre -o ...` takes them. */
export interface ClientOptions {
  /** obd_timeout, seconds. */
  timeout: number
  /** Imperative recovery (off with `noir`). */
  ir: boolean
  /** Attribute and entry cache lifetime, seconds (NFS's actimeo). */
  actimeo: number
  /** Unstable (uncommitted, kept for replay) MiB per OST before writers force a sync. */
  maxUnstableMb: number
  /** Write-back cache per OST, MiB (Lustre's osc max_dirty_mb). */
  maxDirtyMb: number
  /** Largest write RPC, in 4 KiB pages (max_pages_per_rpc). */
  maxPagesPerRpc: number
  /** Write RPCs in flight per OST (max_rpcs_in_flight). */
  maxRpcsInFlight: number
  /** Read-ahead window per sequentially read file, MiB (max_read_ahead_per_file_mb). */
  maxReadAheadPerFileMb: number
  /** Read-ahead held for all files, MiB (max_read_ahead_mb). */
  maxReadAheadMb: number
  /** FUSE binding: lproxy's libfuse3 one when built, else fuse-native (`fuse=native|libfuse2` forces one). */
  fuse: FuseKind
  /** Device nodes in the mount may be opened (off with `nodev`, as mount(8)'s; libfuse's own default is off). */
  dev: boolean
  /** mount(8)'s filesystem-independent flags (noatime, nosuid, ro, ...), handed to the kernel's mount as given. */
  flags: string[]
  /** The filesystem's shared key file (fs class, or the master), 0600: RPCs are signed with it. */
  keyfile?: string
  /** Where the daemon serves /metrics (`metrics=ADDR:PORT`); none by default. */
  metrics?: ListenAddress
  /** Mutual TLS to every node (`tls,ca=PATH,cert=PATH,key=PATH`): the client's certificate, the nodes' checked against the CA. */
  tls?: TlsFiles
}

/** The numeric options, by their Lustre names in the parameter registry. */
const NUMERIC = {
  timeout: 'timeout',
  actimeo: 'actimeo',
  max_unstable_mb: 'maxUnstableMb',
  max_dirty_mb: 'maxDirtyMb',
  max_pages_per_rpc: 'maxPagesPerRpc',
  max_rpcs_in_flight: 'maxRpcsInFlight',
  max_read_ahead_per_file_mb: 'maxReadAheadPerFileMb',
  max_read_ahead_mb: 'maxReadAheadMb',
} as const satisfies Record<string, keyof ClientOptions>

type NumericOption = (typeof NUMERIC)[keyof typeof NUMERIC]

const numericDefaults = Object.fromEntries(Object.entries(NUMERIC).map(([name, key]) => [key, defaultOf(param(name))])) as Record<NumericOption, number>

export const DEFAULT_OPTIONS: ClientOptions = {
  ...numericDefaults,
  ir: true,
  fuse: 'auto',
  dev: true,
  flags: [],
}

/** Flags the kernel applies to any mount; libfuse passes them on to mount(2). */
const VFS_FLAGS = new Set([
  'ro', 'suid', 'nosuid', 'exec', 'noexec', 'sync', 'async', 'dirsync',
  'atime', 'noatime', 'diratime', 'nodiratime', 'relatime', 'norelatime', 'strictatime', 'nostrictatime', 'lazytime', 'nolazytime',
])
/** Options that are mount(8)'s or systemd's business (when and whether to mount), not the filesystem's. */
const MOUNT_ONLY = new Set(['rw', 'defaults', '_netdev', 'auto', 'noauto', 'nofail', 'user', 'nouser', 'users', 'owner', 'group'])

function mountOnly(k: string): boolean {
  return MOUNT_ONLY.has(k) || k.startsWith('x-') || k === 'comment'
}

export function parseOptions(list: string[]): ClientOptions {
  const o: ClientOptions = { ...DEFAULT_OPTIONS }
  let tls = false
  const files: { ca?: string; cert?: string; key?: string } = {}
  for (const item of list.flatMap((s) => s.split(',')).filter(Boolean)) {
    const [k, v] = item.split('=', 2) as [string, string | undefined]
    if (Object.hasOwn(NUMERIC, k)) {
      const name = k as keyof typeof NUMERIC
      o[NUMERIC[name]] = parseParam(param(name), 'mount', v ?? '', (m) => new LpError('EINVAL', `mount option ${m}`))
      continue
    }
    switch (k) {
      case 'noir':
        o.ir = false
        break
      case 'fuse':
        if (v !== 'native' && v !== 'libfuse2') throw new LpError('EINVAL', `mount option '${item}': fuse is native or libfuse2`)
        o.fuse = v
        break
      case 'dev':
      case 'nodev':
        if (v !== undefined) throw new LpError('EINVAL', `mount option '${item}': ${k} takes no value`)
        o.dev = k === 'dev'
        break
      case 'keyfile':
        if (!v) throw new LpError('EINVAL', `mount option '${item}': expected keyfile=<path>`)
        o.keyfile = v
        break
      case 'metrics':
        o.metrics = parseListenAddress(`mount option '${item}':`, v ?? '')
        break
      case 'tls':
        if (v !== undefined) throw new LpError('EINVAL', `mount option '${item}': tls takes no value`)
        tls = true
        break
      case 'ca':
      case 'cert':
      case 'key':
        if (!v) throw new LpError('EINVAL', `mount option '${item}': expected ${k}=<path>`)
        // The mount daemon may start elsewhere: a relative path is the caller's.
        files[k] = path.resolve(v)
        break
      default:
        if (mountOnly(k)) break
        if (VFS_FLAGS.has(k) && v === undefined) {
          o.flags = [...o.flags.filter((f) => f !== k), k]
          break
        }
        throw new LpError('EINVAL', `unknown mount option '${k}' (known: ${Object.keys(NUMERIC).map((n) => `${n}=N`).join(', ')}, noir, fuse=native|libfuse2, dev, nodev, keyfile=PATH, metrics=ADDR:PORT, tls, ca=PATH, cert=PATH, key=PATH, mount(8)'s noatime, nosuid, noexec, ro, ... and _netdev, noauto, nofail, x-systemd.*)`)
    }
  }
  const named = Object.keys(files).length > 0
  if (named !== tls) throw new LpError('EINVAL', tls ? 'mount option tls needs ca=PATH, cert=PATH and key=PATH' : 'the mount options ca=, cert= and key= go with tls')
  o.tls = tlsFiles(files, 'the mount options ca=, cert= and key=')
  return o
}

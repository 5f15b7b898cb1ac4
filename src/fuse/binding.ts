import type { Logger } from '../common/log.js'
import type { Llite } from '../llite/llite.js'
import { LowLevelFuse } from './lowlevel.js'

/**
 * Which FUSE binding serves a mount: lproxy's own libfuse3 low-level binding (native/) when
 * its addon is built and loads, else fuse-native (libfuse 2) with a warning; `-o fuse=...`
 * forces one.
 */
export type FuseKind = 'auto' | 'native' | 'libfuse2'

/**
 * What lproxy's own binding asks of the filesystem beneath it: llite, or the stand-in with no
 * work of its own that `lproxy selftest` times the binding and the RPCs with.
 */
export type FuseFs = Pick<
  Llite,
  | 'attr' | 'lookupStat' | 'stat' | 'statOf' | 'setattr' | 'ftruncate' | 'readlink' | 'listDirPage' | 'mkdir' | 'symlink' | 'unlink'
  | 'mknod' | 'rename' | 'link' | 'create' | 'open' | 'uncached' | 'onDataLost' | 'read' | 'write' | 'flush' | 'fsync' | 'fsyncdir' | 'release' | 'statfs'
>

export interface FuseMountOptions {
  mountpoint: string
  fsname: string
  attrTimeoutS: number
  /** Let device nodes be opened (the kernel's MS_NODEV off); libfuse mounts nodev unless told. */
  dev: boolean
  /** mount(8)'s filesystem-independent flags (noatime, nosuid, ro, ...), for the kernel's mount. */
  flags?: string[]
  log: Logger
  /** The kernel ended the session: unmounted from outside (umount, fusermount -u) or aborted. */
  ended?: () => void
}

export interface FuseBinding {
  mount(): Promise<void>
  unmount(): Promise<void>
}

export async function openFuse(kind: FuseKind, llite: Llite, o: FuseMountOptions): Promise<FuseBinding> {
  if (kind !== 'libfuse2') {
    try {
      const fuse = new LowLevelFuse(llite, o)
      o.log.info({ fuse: 'native' }, 'FUSE binding: libfuse3 low-level (native/)')
      return fuse
    } catch (e) {
      if (kind === 'native') throw e
      o.log.warn({ err: (e as Error).message }, 'falling back to fuse-native: 128 KiB requests, no interrupts, new files owned by the daemon')
    }
  }
  // Loaded only when used: it needs libfuse 2, which a machine with the native binding may lack.
  const { FuseAdapter } = await import('./adapter.js')
  o.log.info({ fuse: 'libfuse2' }, 'FUSE binding: fuse-native (libfuse 2)')
  return new FuseAdapter(llite, o)
}

import { z } from 'zod'
import type { TargetKind } from './names.js'

/**
 * The RPC catalogue: one entry per opcode, with the target kinds that serve it, whether it
 * modifies state (gets a transno, is kept for replay) and the schema of its arguments. Servers
 * validate every request against it before anything touches storage.
 */

/** NAME_MAX and a symlink target's limit (ext4's), in bytes of UTF-8 as the kernel counts them. */
export const MAX_NAME = 255
export const MAX_SYMLINK = 4095
/** Links to one inode, and subdirectories of one directory (ext4's and Lustre's ldiskfs EXT4_LINK_MAX). */
export const MAX_LINK = 65000
/**
 * The largest file: ext4's limit with 4 KiB blocks ((2^32 - 1) blocks), the smallest of the
 * backing filesystems a target may sit on. Anything past it is refused at the schema (EFBIG)
 * before an OST could journal a change its filesystem would then refuse at every redo.
 */
export const MAX_FILE_SIZE = 2 ** 44 - 4096
/** Supplementary groups a request may carry (Linux's NGROUPS_MAX). */
export const MAX_GROUPS = 65536
export const MAX_IO = 64 * 1024 * 1024
export const MAX_STRIPES = 64
/** FIDs per ost_destroy: the MDT's OSP sends the objects of removed files in batches. */
export const MAX_DESTROY_BATCH = 1024
/** Open handles one mdt_close may close (mdc sends its closes in batches: mdc/closes.ts). */
export const MAX_CLOSE_BATCH = 64
/** Names per mdt_batch_lookup, and objects per ost_getattr: statahead asks for many files at once. */
export const MAX_LOOKUP_BATCH = 256
export const MAX_GLIMPSE_OBJECTS = 4096
/** Fragments of one ost_write (Lustre's niobufs): scattered dirty pages of an object leave in one RPC. */
export const MAX_NIOBUFS = 256
/** FIDs per ost_list page (each with up to MAX_STRIPES objects): the orphan cleanup and lfsck page through an OST. */
export const MAX_LIST_FIDS = 1024
export const STRIPE_UNIT = 64 * 1024

const u32 = z.number().int().min(0).max(0xffffffff)
export const fidSchema = z.number().int().min(1).max(0xffffffff)
/** In a `u` regexp a surrogate pair is one code point: what is left matching Cs is alone. */
const LONE_SURROGATE = /\p{Cs}/u

/**
 * Why a name cannot be stored, as the errno a local filesystem gives, or null. Names are
 * Unicode here (they travel as JSON): the kernel's bytes must be UTF-8, so a string with a
 * lone surrogate (no UTF-8 for it) is no name. The length counts bytes, as NAME_MAX does.
 */
export function nameError(n: string): 'EINVAL' | 'ENAMETOOLONG' | null {
  if (n === '' || n === '.' || n === '..' || n.includes('/') || n.includes('\0') || LONE_SURROGATE.test(n)) return 'EINVAL'
  return Buffer.byteLength(n) > MAX_NAME ? 'ENAMETOOLONG' : null
}

/** Why a string cannot be a symlink's target (1 to MAX_SYMLINK bytes of UTF-8, no NUL), or null. */
export function targetError(t: string): 'EINVAL' | 'ENAMETOOLONG' | null {
  if (t === '' || t.includes('\0') || LONE_SURROGATE.test(t)) return 'EINVAL'
  return Buffer.byteLength(t) > MAX_SYMLINK ? 'ENAMETOOLONG' : null
}

// A UTF-16 unit is at least a byte of UTF-8: the max() bounds the work before the byte count.
export const nameSchema = z
  .string()
  .max(MAX_NAME)
  .refine((n) => nameError(n) === null, { message: `a name is 1 to ${MAX_NAME} bytes of UTF-8, not '.' or '..', without '/' or NUL` })
const targetSchema = z
  .string()
  .max(MAX_SYMLINK)
  .refine((t) => targetError(t) === null, { message: `a symlink target is 1 to ${MAX_SYMLINK} bytes of UTF-8, without NUL` })
/** Offsets past the maximum file size are refused as too big (the front answers the errno, EFBIG). */
const offsetSchema = z
  .number()
  .int()
  .min(0)
  .refine((n) => n <= MAX_FILE_SIZE, { message: `past the maximum file size ${MAX_FILE_SIZE}`, params: { errno: 'EFBIG' } })
/**
 * A time in ms since the epoch, within a JS Date's range (±8.64e15 ms, ±275,760 years): past
 * it, the OST's utimes at commit fails (EINVAL), and with it the whole committed batch.
 */
export const MAX_TIME_MS = 8.64e15
const timeSchema = z.number().min(-MAX_TIME_MS).max(MAX_TIME_MS)
const modeSchema = z.number().int().min(0).max(0o7777)
export const handleSchema = z.string().regex(/^[0-9a-f]{16}$/)

/**
 * Who asks (Lustre's mdt_body fsuid/fsgid/suppgids): the caller's uid, gid and supplementary
 * groups, which the MDT checks permissions with. A request without one is root's (as before
 * identities were carried), and root_squash applies to it as to uid 0.
 */
export const credSchema = z.object({ uid: u32, gid: u32, groups: z.array(u32).max(MAX_GROUPS) })
export type Cred = z.infer<typeof credSchema>
const cred = { cred: credSchema.optional() }

export const layoutSchema = z.object({
  stripe_size: z.number().int().min(STRIPE_UNIT).max(2 ** 32).refine((n) => n % STRIPE_UNIT === 0, {
    message: `stripe size must be a multiple of ${STRIPE_UNIT}`,
  }),
  osts: z.array(z.number().int().min(0).max(0xffff)).min(1).max(MAX_STRIPES),
})
export type Layout = z.infer<typeof layoutSchema>

/**
 * An OST capability (Lustre's OSS capability, protocol/capa.ts): the MDT's grant to one
 * client of `ops` on the objects of file `fid` until `expiry` (wall-clock ms), MACed with a
 * key only servers hold. Sent back with each OST request on the file's objects.
 */
export const capaSchema = z.object({
  fid: fidSchema,
  ops: z.enum(['r', 'rw']),
  expiry: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  mac: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
})
export type Capa = z.infer<typeof capaSchema>
/** A layout as the MDT hands it out: on a keyed filesystem, with the capability for its objects (never stored: a client's is dropped by the schema). */
export type GrantedLayout = Layout & { capa?: Capa }

/** A directory's default layout: stripe_count -1 means every OST; offset -1 means round-robin. */
export const dirLayoutSchema = z.object({
  stripe_count: z.number().int().min(-1).max(MAX_STRIPES).refine((n) => n !== 0, { message: 'stripe count 0 is not allowed here' }),
  stripe_size: layoutSchema.shape.stripe_size,
  stripe_offset: z.number().int().min(-1).max(0xffff),
})
export type DirLayout = z.infer<typeof dirLayoutSchema>

/** Regular file, directory, symlink, and the special files (FIFO, character and block device, socket): inodes alone, no objects. */
export const FILE_TYPES = ['reg', 'dir', 'lnk', 'fifo', 'chr', 'blk', 'sock'] as const
export type FileType = (typeof FILE_TYPES)[number]

export interface MdtAttr {
  fid: number
  type: FileType
  /** Permission bits only; the type is in `type`. */
  mode: number
  uid: number
  gid: number
  nlink: number
  atime: number
  mtime: number
  ctime: number
  /** Directories and symlinks carry their size here; regular files' size lives on the OSTs. */
  size: number
  layout?: GrantedLayout
  dir_layout?: DirLayout
  target?: string
  /** Character and block devices: the device number (the kernel's new_encode_dev, as FUSE carries it). */
  rdev?: number
  /**
   * Directories: a counter raised by every change of their entries (NFSv4's change
   * attribute). A client that made a directory and saw every change of it since knows its
   * entries, and so which names do not exist.
   */
  change?: number
  /** Directories: the directory that holds it, the root's being itself (what '..' is). */
  parent?: number
}

export interface DirEntry {
  name: string
  fid: number
  type: FileType
  /** Where a listing resumes after this entry (mdt_readdir's cookie): stable while the entry lives. Absent from older MDTs. */
  cookie?: number
}

export interface StatfsReply {
  bsize: number
  blocks: number
  bfree: number
  bavail: number
  files: number
  ffree: number
  namemax: number
}

export interface ObjAttr {
  size: number
  blocks: number
  mtime: number
}

/** One FID of an ost_list page: its objects, and the transno that destroyed it if it was. */
export interface OstListEntry {
  fid: number
  objects: Array<{ stripe: number; size: number; version: number }>
  destroyed?: number
}

export interface ConnectReply {
  handle: string
  instance: number
  replayable: boolean
  recovering: boolean
  last_committed: number
  target_uuid: string
}

export interface TargetInfo {
  name: string
  kind: TargetKind
  index: number
  /** Primary NID first, then the failover NIDs. */
  nids: string[]
  mode: 'failover' | 'failout'
  /** Cleared by a permanent deactivate on the MGS. */
  active: boolean
  /** The NID it was last started on and its instance counter (imperative recovery). */
  current_nid?: string
  instance: number
}

export interface FsConfig {
  fsname: string
  port: number
  targets: TargetInfo[]
  seq: number
}

export interface IrEvent {
  seq: number
  target: string
  nid: string
  instance: number
}

const objRef = { fid: fidSchema, stripe: z.number().int().min(0).max(MAX_STRIPES - 1), capa: capaSchema.optional() }

/** The fragments of a write's bulk, in ascending order of offset, not overlapping; the first at the write's offset. */
const niobufsSchema = z
  .array(z.object({ offset: offsetSchema, length: z.number().int().min(1).max(MAX_IO) }))
  .min(1)
  .max(MAX_NIOBUFS)
  .refine((fs) => fs.every((f, i) => i === 0 || fs[i - 1]!.offset + fs[i - 1]!.length <= f.offset), {
    message: 'fragments must be in ascending order of offset and must not overlap',
  })
  .refine((fs) => fs.every((f) => f.offset + f.length <= MAX_FILE_SIZE), {
    message: `a fragment ends past the maximum file size ${MAX_FILE_SIZE}`,
    params: { errno: 'EFBIG' },
  })

export const OPS = {
  // Every target
  connect: {
    kinds: ['mgs', 'mdt', 'ost'],
    modifying: false,
    args: z.object({ prev_handle: handleSchema.optional(), mount_flags: z.array(z.string().max(32)).max(16).optional() }),
  },
  disconnect: { kinds: ['mgs', 'mdt', 'ost'], modifying: false, args: z.object({}) },
  ping: { kinds: ['mgs', 'mdt', 'ost'], modifying: false, args: z.object({}) },
  sync: { kinds: ['mdt', 'ost'], modifying: false, args: z.object({}) },
  statfs: { kinds: ['mdt', 'ost'], modifying: false, args: z.object({}) },

  // Metadata target
  /** With `handle`, an open of the file by this client: its capability grants what the open did (a renewal for write-back). */
  mdt_getattr: { kinds: ['mdt'], modifying: false, args: z.object({ ...cred, fid: fidSchema, handle: handleSchema.optional() }) },
  mdt_lookup: { kinds: ['mdt'], modifying: false, args: z.object({ ...cred, parent: fidSchema, name: nameSchema }) },
  /** Statahead: the entries of many names of one directory, a missing one answered as null. */
  mdt_batch_lookup: {
    kinds: ['mdt'],
    modifying: false,
    args: z.object({ ...cred, parent: fidSchema, names: z.array(nameSchema).min(1).max(MAX_LOOKUP_BATCH) }),
  },
  mdt_readdir: {
    kinds: ['mdt'],
    modifying: false,
    args: z.object({ ...cred, fid: fidSchema, cookie: z.number().int().min(0), count: z.number().int().min(1).max(10000) }),
  },
  mdt_create: {
    kinds: ['mdt'],
    modifying: true,
    args: z.object({
      ...cred,
      parent: fidSchema,
      name: nameSchema,
      type: z.enum(FILE_TYPES),
      mode: modeSchema,
      uid: u32,
      gid: u32,
      time: timeSchema,
      target: targetSchema.optional(),
      /** Devices only. */
      rdev: u32.optional(),
      layout: layoutSchema.optional(),
      /** Open the new file in the same transaction, with these open(2) flags. */
      open_flags: u32.optional(),
      exclusive: z.boolean().optional(),
    }),
  },
  mdt_setattr: {
    kinds: ['mdt'],
    modifying: true,
    args: z.object({
      ...cred,
      fid: fidSchema,
      mode: modeSchema.optional(),
      uid: u32.optional(),
      gid: u32.optional(),
      atime: timeSchema.optional(),
      mtime: timeSchema.optional(),
      ctime: timeSchema.optional(),
      /** The times are "now" (utimensat's UTIME_NOW, a truncate): write permission suffices, as for touch. */
      times_now: z.boolean().optional(),
      layout: layoutSchema.optional(),
      dir_layout: dirLayoutSchema.nullable().optional(),
    }),
  },
  mdt_link: {
    kinds: ['mdt'],
    modifying: true,
    args: z.object({ ...cred, fid: fidSchema, parent: fidSchema, name: nameSchema, time: timeSchema }),
  },
  mdt_unlink: {
    kinds: ['mdt'],
    modifying: true,
    // fid: the inode the client means to remove; the MDT refuses when the name names another.
    args: z.object({ ...cred, parent: fidSchema, name: nameSchema, dir: z.boolean(), time: timeSchema, fid: fidSchema.optional() }),
  },
  mdt_rename: {
    kinds: ['mdt'],
    modifying: true,
    // noreplace: renameat2's RENAME_NOREPLACE, decided on the MDT so no other client's create slips in between.
    // fid, new_fid: the inodes the client means to move and to replace; the MDT refuses when the names name others.
    args: z.object({
      ...cred,
      parent: fidSchema,
      name: nameSchema,
      new_parent: fidSchema,
      new_name: nameSchema,
      time: timeSchema,
      noreplace: z.boolean().optional(),
      fid: fidSchema.optional(),
      new_fid: fidSchema.optional(),
    }),
  },
  mdt_open: { kinds: ['mdt'], modifying: true, args: z.object({ ...cred, fid: fidSchema, flags: u32 }) },
  mdt_close: { kinds: ['mdt'], modifying: true, args: z.object({ handles: z.array(handleSchema).min(1).max(MAX_CLOSE_BATCH) }) },

  // Object storage target
  ost_write: {
    kinds: ['ost'],
    modifying: true,
    bulkIn: true,
    /**
     * mtime: the client's time of the write (Lustre's BRW carries the inode's), so the object's mtime is the writer's.
     * niobufs: where the bulk's pieces go, when it is not one run from `offset`.
     */
    args: z
      .object({ ...objRef, offset: offsetSchema, append: z.boolean().optional(), mtime: timeSchema.optional(), niobufs: niobufsSchema.optional() })
      .refine((a) => !a.niobufs || (!a.append && a.niobufs[0]?.offset === a.offset), { message: 'niobufs start at the offset, and an append has none' }),
  },
  ost_read: {
    kinds: ['ost'],
    modifying: false,
    bulkOut: true,
    args: z.object({ ...objRef, offset: offsetSchema, length: z.number().int().min(0).max(MAX_IO) }),
  },
  ost_punch: { kinds: ['ost'], modifying: true, args: z.object({ ...objRef, size: offsetSchema, mtime: timeSchema.optional() }) },
  ost_getattr: {
    kinds: ['ost'],
    modifying: false,
    args: z.object({ objects: z.array(z.object(objRef)).min(1).max(MAX_GLIMPSE_OBJECTS) }),
  },
  ost_destroy: { kinds: ['ost'], modifying: true, args: z.object({ fids: z.array(fidSchema).min(1).max(MAX_DESTROY_BATCH) }) },
  /** Set an existing object's mtime (utimens reaches the objects too, as in Lustre). */
  ost_setattr: { kinds: ['ost'], modifying: true, args: z.object({ ...objRef, mtime: timeSchema }) },
  /** The OST's objects and destroyed FIDs in FID order, after `after` (a cursor: the last FID of the previous page). */
  ost_list: {
    kinds: ['ost'],
    modifying: false,
    args: z.object({ after: z.number().int().min(0).max(0xffffffff), count: z.number().int().min(1).max(MAX_LIST_FIDS) }),
  },

  // Management service
  mgs_config: { kinds: ['mgs'], modifying: false, args: z.object({ fsname: z.string().max(8).optional() }) },
  mgs_target_reg: {
    kinds: ['mgs'],
    modifying: false,
    args: z.object({
      name: z.string().min(1).max(64),
      kind: z.enum(['mdt', 'ost']),
      index: z.number().int().min(0).max(0xffff),
      fsname: z.string().min(1).max(8),
      nid: z.string().min(1).max(128),
      failnodes: z.array(z.string().min(1).max(128)).max(8),
      mode: z.enum(['failover', 'failout']),
      instance: z.number().int().min(0),
      /** tunefs --writeconf: replace what the MGS knows of the target instead of adding to it. */
      writeconf: z.boolean().optional(),
    }),
  },
  mgs_set_param: {
    kinds: ['mgs'],
    modifying: false,
    args: z.object({ target: z.string().min(1).max(64), key: z.enum(['active']), value: z.string().max(64) }),
  },
  mgs_watch: {
    kinds: ['mgs'],
    modifying: false,
    args: z.object({ since: z.number().int().min(0), wait_ms: z.number().int().min(0).max(600_000) }),
  },
} as const satisfies Record<string, OpSpec>

export interface OpSpec {
  kinds: readonly TargetKind[]
  modifying: boolean
  bulkIn?: boolean
  bulkOut?: boolean
  args: z.ZodType
}

export type OpName = keyof typeof OPS
export type OpArgs<O extends OpName> = z.infer<(typeof OPS)[O]['args']>

export function isOpName(s: string): s is OpName {
  return Object.prototype.hasOwnProperty.call(OPS, s)
}

/** A namespace change's reply carries the new attributes of the directories it changed, so the client need not fetch them again. */
export interface DirsChanged {
  /** The attributes of each directory the change touched, after it. */
  dirs: MdtAttr[]
  /** Their change counters before it (as NFSv4's change_info: before equal to what a client knew, it missed nothing). */
  was: number[]
}

/**
 * Version-based recovery: what a modifying request found on the objects it changed, by object
 * key (MDT: the FID in decimal), each object's version being the transno of its last change
 * (0: it did not exist). A replay carries its original reply back; the target compares.
 */
export const preVersionsSchema = z.record(z.string().max(32), z.number().int().min(0))
export type PreVersions = z.infer<typeof preVersionsSchema>

/** Replies, by opcode (the wire carries them as JSON). */
export interface OpReplies {
  connect: ConnectReply
  disconnect: Record<string, never>
  ping: Record<string, never>
  sync: Record<string, never>
  statfs: StatfsReply & { objects?: number }
  mdt_getattr: { attr: MdtAttr }
  mdt_lookup: { attr: MdtAttr }
  mdt_batch_lookup: { attrs: (MdtAttr | null)[] }
  mdt_readdir: { entries: DirEntry[]; next: number | null }
  mdt_create: { attr: MdtAttr; handle?: string; pre_versions: PreVersions } & DirsChanged
  mdt_setattr: { attr: MdtAttr; pre_versions: PreVersions }
  mdt_link: { attr: MdtAttr; pre_versions: PreVersions } & DirsChanged
  mdt_unlink: { fid: number; nlink: number; pre_versions: PreVersions } & DirsChanged
  /** `fid`: what moved (a directory's parent is in its attributes, which the client must drop). */
  mdt_rename: { fid: number; pre_versions: PreVersions } & DirsChanged
  mdt_open: { attr: MdtAttr; handle: string }
  mdt_close: Record<string, never>
  ost_write: { offset: number; size: number; pre_versions: PreVersions }
  /** attr: the object's, as the read saw it (null: no object yet), so a read can stand in for a glimpse (absent from an older OST). */
  ost_read: { length: number; attr?: ObjAttr | null }
  ost_punch: { pre_versions: PreVersions }
  ost_getattr: { attrs: (ObjAttr | null)[] }
  ost_destroy: { pre_versions: PreVersions }
  ost_setattr: { pre_versions: PreVersions }
  ost_list: { entries: OstListEntry[]; next: number | null }
  mgs_config: FsConfig
  mgs_target_reg: Record<string, never>
  mgs_set_param: Record<string, never>
  mgs_watch: { seq: number; events: IrEvent[] }
}

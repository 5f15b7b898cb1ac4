/**
 * Errors travel as negative Linux errnos, as Lustre's rc does. The table is the kernel's
 * (asm-generic/errno-base.h and errno.h); Node's own list is libuv's and lacks several
 * (ESHUTDOWN, EREMOTEIO, ...).
 */
const LINUX_ERRNO = {
  EPERM: 1, ENOENT: 2, ESRCH: 3, EINTR: 4, EIO: 5, ENXIO: 6, E2BIG: 7, ENOEXEC: 8, EBADF: 9,
  ECHILD: 10, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EFAULT: 14, ENOTBLK: 15, EBUSY: 16, EEXIST: 17,
  EXDEV: 18, ENODEV: 19, ENOTDIR: 20, EISDIR: 21, EINVAL: 22, ENFILE: 23, EMFILE: 24, ENOTTY: 25,
  ETXTBSY: 26, EFBIG: 27, ENOSPC: 28, ESPIPE: 29, EROFS: 30, EMLINK: 31, EPIPE: 32, EDOM: 33,
  ERANGE: 34, EDEADLK: 35, ENAMETOOLONG: 36, ENOLCK: 37, ENOSYS: 38, ENOTEMPTY: 39, ELOOP: 40,
  ENOMSG: 42, EIDRM: 43, ECHRNG: 44, EL2NSYNC: 45, EL3HLT: 46, EL3RST: 47, ELNRNG: 48, EUNATCH: 49,
  ENOCSI: 50, EL2HLT: 51, EBADE: 52, EBADR: 53, EXFULL: 54, ENOANO: 55, EBADRQC: 56, EBADSLT: 57,
  EBFONT: 59, ENOSTR: 60, ENODATA: 61, ETIME: 62, ENOSR: 63, ENONET: 64, ENOPKG: 65, EREMOTE: 66,
  ENOLINK: 67, EADV: 68, ESRMNT: 69, ECOMM: 70, EPROTO: 71, EMULTIHOP: 72, EDOTDOT: 73,
  EBADMSG: 74, EOVERFLOW: 75, ENOTUNIQ: 76, EBADFD: 77, EREMCHG: 78, ELIBACC: 79, ELIBBAD: 80,
  ELIBSCN: 81, ELIBMAX: 82, ELIBEXEC: 83, EILSEQ: 84, ERESTART: 85, ESTRPIPE: 86, EUSERS: 87,
  ENOTSOCK: 88, EDESTADDRREQ: 89, EMSGSIZE: 90, EPROTOTYPE: 91, ENOPROTOOPT: 92,
  EPROTONOSUPPORT: 93, ESOCKTNOSUPPORT: 94, EOPNOTSUPP: 95, EPFNOSUPPORT: 96, EAFNOSUPPORT: 97,
  EADDRINUSE: 98, EADDRNOTAVAIL: 99, ENETDOWN: 100, ENETUNREACH: 101, ENETRESET: 102,
  ECONNABORTED: 103, ECONNRESET: 104, ENOBUFS: 105, EISCONN: 106, ENOTCONN: 107, ESHUTDOWN: 108,
  ETOOMANYREFS: 109, ETIMEDOUT: 110, ECONNREFUSED: 111, EHOSTDOWN: 112, EHOSTUNREACH: 113,
  EALREADY: 114, EINPROGRESS: 115, ESTALE: 116, EUCLEAN: 117, ENOTNAM: 118, ENAVAIL: 119,
  EISNAM: 120, EREMOTEIO: 121, EDQUOT: 122, ENOMEDIUM: 123, EMEDIUMTYPE: 124, ECANCELED: 125
} as const

export type ErrnoName = keyof typeof LINUX_ERRNO

const byName = LINUX_ERRNO as Record<string, number>
const byNumber = new Map<number, string>()
for (const [name, num] of Object.entries(byName)) byNumber.set(num, name)

export function errnoOf(name: ErrnoName): number {
  return byName[name]!
}

export function errnoName(errno: number): string {
  return byNumber.get(Math.abs(errno)) ?? `E${Math.abs(errno)}`
}

/**
 * An error with a POSIX meaning; `errno` is positive. It is an answer, not a fault (the FUSE
 * layer logs the stacks of other errors only), so it carries no stack trace: in the mount
 * daemon's profile, capturing one was about half the cost of a lookup of an absent name.
 */
export class LpError extends Error {
  readonly errno: number
  readonly code: ErrnoName

  constructor(code: ErrnoName, message?: string) {
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    super(message ?? code)
    Error.stackTraceLimit = limit
    this.code = byName[code] !== undefined ? code : 'EIO'
    this.errno = byName[this.code]!
  }

  static fromStatus(status: number, message?: string): LpError {
    return new LpError(errnoName(status) as ErrnoName, message)
  }
}

export function isLpError(e: unknown, code?: ErrnoName): e is LpError {
  return e instanceof LpError && (code === undefined || e.code === code)
}

/** Map any thrown value to a negative errno (EIO for what has no POSIX meaning). */
export function toStatus(e: unknown): number {
  if (e instanceof LpError) return -e.errno
  const code = (e as { code?: unknown } | null)?.code
  if (typeof code === 'string' && byName[code] !== undefined) return -byName[code]
  return -byName.EIO!
}

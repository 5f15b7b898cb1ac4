import os from 'node:os'
import { z } from 'zod'
import { MAX_LOOKUP_BATCH } from '../protocol/ops.js'
import { nidPatternList } from '../protocol/nid.js'
import { type Bounds, quantity } from './quantity.js'

/**
 * Every tunable parameter, declared once under Lustre's name: its bounds, default and where it
 * is read. The mount's `-o` options, a mount's set_param, a target's `--param` (format, start,
 * tunefs, cluster up) and the CLI's numeric options all check values here, so one parameter
 * has one range and one error phrase wherever it is given.
 */

/** Where a parameter is given: `-o name=V` at mount, `set_param` on a mount, `--param` of a target. */
export type Scope = 'mount' | 'client' | 'target'

interface Common {
  /** Lustre's name; on a mount set_param matches its last component (`osc.*.max_dirty_mb`). */
  name: string
  /** Other names of the same parameter (a target's `sys.timeout` is the mount's `timeout`). */
  aliases?: Partial<Record<Scope, string>>
  scopes: Scope[]
  help: string
}

export interface NumberParam extends Common {
  bounds: Bounds
  /** A constant, or a multiple of obd_timeout (Lustre derives the recovery window from it). */
  default: number | { timeouts: number }
}

export interface TextParam extends Common {
  /** The issue's message completes "NAME: 'VALUE' ...". */
  schema: z.ZodType<string, string>
}

export type ParamDef = NumberParam | TextParam

const seconds = (min: number, max: number, above = false): Bounds => ({ min, max, above, integer: false, unit: 'seconds' })
const positiveSeconds = seconds(0, 3600, true)
/** The recovery window: up to 10 x the largest obd_timeout. */
const recoverySeconds = seconds(0, 36000, true)
const int = (min: number, max: number): Bounds => ({ min, max, integer: true })

/** The enumerated text values, as one issue. */
function oneOf(...values: string[]): z.ZodType<string, string> {
  const list = values.map((v) => `'${v}'`)
  return z.string().refine((v) => values.includes(v), { message: `must be ${list.length > 1 ? `${list.slice(0, -1).join(', ')} or ${list.at(-1)}` : list[0]}` })
}

const squashId = quantity({ min: 0, max: 0xfffffffe, integer: true })

/** root_squash's `uid:gid`. */
const rootSquash = z.string().refine((v) => {
  const m = /^(\d+):(\d+)$/.exec(v)
  return !!m && squashId.safeParse(m[1]).success && squashId.safeParse(m[2]).success
}, { message: "must be 'uid:gid', e.g. 65534:65534" })

/** nosquash_nids: host@net or *@net, separated by ',' or ' '. */
const nidPatterns = z.string().superRefine((v, ctx) => {
  try {
    nidPatternList(v)
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: `is not a NID list: ${(e as Error).message}` })
  }
})

/** Lustre's OSC_MAX_DIRTY_MB_MAX. */
const MAX_DIRTY_MB = 2048

/** Lustre's default read-ahead budget of a mount: 1/32 of the memory, at most 1 GiB. */
const READ_AHEAD_MB = Math.min(1024, Math.floor(os.totalmem() / 2 ** 20 / 32))

export const NUMBER_PARAMS: readonly NumberParam[] = [
  { name: 'timeout', aliases: { target: 'sys.timeout' }, scopes: ['mount', 'client', 'target'], bounds: seconds(1, 3600), default: 100, help: 'obd_timeout: RPC deadlines, pings and reconnects derive from it' },
  { name: 'actimeo', scopes: ['mount'], bounds: seconds(0, 3600), default: 1, help: 'attribute and entry cache lifetime (NFS\'s actimeo)' },
  { name: 'max_unstable_mb', scopes: ['mount'], bounds: { min: 0, max: 1 << 20, integer: false, unit: 'MiB' }, default: 256, help: 'uncommitted MiB kept for replay per OST before writers force a sync' },
  { name: 'max_dirty_mb', scopes: ['mount', 'client'], bounds: int(0, MAX_DIRTY_MB), default: 64, help: 'write-back cache per OST, MiB' },
  { name: 'max_pages_per_rpc', scopes: ['mount', 'client'], bounds: int(1, 16384), default: 1024, help: 'largest write RPC, in 4 KiB pages' },
  { name: 'max_rpcs_in_flight', scopes: ['mount', 'client'], bounds: int(1, 256), default: 8, help: 'write RPCs in flight per OST' },
  { name: 'max_read_ahead_per_file_mb', scopes: ['mount'], bounds: int(0, 4096), default: 32, help: 'read-ahead window per sequentially read file, MiB' },
  { name: 'max_read_ahead_mb', scopes: ['mount', 'client'], bounds: int(0, 65536), default: READ_AHEAD_MB, help: 'MiB read ahead (and read with small files\' opens) held for all files of the mount' },
  { name: 'statahead_max', scopes: ['client'], bounds: int(0, 8192), default: 128, help: 'names fetched ahead of a listing process, per directory (0: off)' },
  { name: 'statahead_batch_max', scopes: ['client'], bounds: int(1, MAX_LOOKUP_BATCH), default: 64, help: 'names per statahead batch RPC' },
  { name: 'statahead_agl', scopes: ['client'], bounds: int(0, 1), default: 1, help: 'statahead glimpses the sizes too' },
  { name: 'active', scopes: ['client'], bounds: int(0, 1), default: 1, help: 'an OSC in use (0: deactivated, its stripes fail with EIO)' },
  { name: 'commit_interval', scopes: ['target'], bounds: positiveSeconds, default: 5, help: 'seconds between journal commits' },
  { name: 'mmp_interval', scopes: ['target'], bounds: positiveSeconds, default: 1, help: 'multiple-mount protection update interval' },
  // Lustre's 3 x obd_timeout, halved by imperative recovery (its 120 s floor, scaled as 1.2 x obd_timeout, is lower).
  { name: 'recovery_time_soft', scopes: ['target'], bounds: recoverySeconds, default: { timeouts: 1.5 }, help: 'recovery window, extended while clients come back' },
  { name: 'recovery_time_hard', scopes: ['target'], bounds: recoverySeconds, default: { timeouts: 9 }, help: 'recovery never lasts longer' },
  { name: 'journal_checkpoint_mb', scopes: ['target'], bounds: { min: 0, max: 1 << 20, above: true, integer: false, unit: 'MiB' }, default: 256, help: 'journal MiB after which a checkpoint is cut' },
]

/** Target params that are not numbers. */
export const TEXT_PARAMS: readonly TextParam[] = [
  { name: 'failover.mode', scopes: ['target'], schema: oneOf('failover', 'failout'), help: 'failout: clients get EIO at once instead of waiting for the OST' },
  { name: 'root_squash', scopes: ['target'], schema: rootSquash, help: 'MDT: uid:gid that root acts as, from any NID but nosquash_nids' },
  { name: 'nosquash_nids', scopes: ['target'], schema: nidPatterns, help: 'MDT: NIDs (host@tcp, or *@tcp for a whole network) whose root is not squashed' },
  { name: 'tls', scopes: ['target'], schema: oneOf('required'), help: 'served only by a node with TLS on (the port then refuses plaintext)' },
]

/** Every parameter given in `scope`, under the name it has there. */
export function paramsIn(scope: Scope): ParamDef[] {
  return [...NUMBER_PARAMS, ...TEXT_PARAMS].filter((d) => d.scopes.includes(scope))
}

/** A value refused: one line naming the parameter, the value and what it may be. */
export class ParamError extends Error {}

/** The name a parameter goes by in `scope`. */
export function nameIn(def: ParamDef, scope: Scope): string {
  return def.aliases?.[scope] ?? def.name
}

/** The parameter called `name` in `scope`, if any. */
export function paramNamed(scope: Scope, name: string): ParamDef | undefined {
  return paramsIn(scope).find((d) => nameIn(d, scope) === name)
}

function schemaOf(def: ParamDef): z.ZodType<number | string, string> {
  return 'bounds' in def ? quantity(def.bounds) : def.schema
}

/**
 * `text` as `def` takes it, under the name it has in `scope`; otherwise the error `fail` makes
 * of the one-line message (a ParamError by default; a consumer's errno or usage error).
 */
export function parseParam<D extends ParamDef>(def: D, scope: Scope, text: string, fail?: (message: string) => Error): D extends NumberParam ? number : string
export function parseParam(def: ParamDef, scope: Scope, text: string, fail: (message: string) => Error = (m) => new ParamError(m)): number | string {
  const r = schemaOf(def).safeParse(text)
  if (r.success) return r.data
  const issue = r.error.issues[0]!.message
  throw fail(`${nameIn(def, scope)}: '${text}' ${'bounds' in def ? `is not ${issue}` : issue}`)
}

/** A numeric parameter's default, given obd_timeout in seconds for those derived from it. */
export function defaultOf(def: NumberParam, timeout: number = defaultTimeout()): number {
  return typeof def.default === 'number' ? def.default : def.default.timeouts * timeout
}

/** The numeric parameter of that name (any scope); for defaults read by code. */
export function param(name: string): NumberParam {
  const d = NUMBER_PARAMS.find((p) => p.name === name)
  if (!d) throw new Error(`no parameter ${name} in the registry`)
  return d
}

function defaultTimeout(): number {
  return param('timeout').default as number
}

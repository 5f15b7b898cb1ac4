import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { randomUUID } from 'node:crypto'
import { z } from 'zod'
import { readJson, writeFileAtomic, fsyncDir, mkdirDurable } from '../../common/fsutil.js'
import { type KeyFile, generateKey, readKeyFile, writeKeyFile } from '../../common/keyfile.js'
import { nidList, NidError, DEFAULT_PORT } from '../../protocol/nid.js'
import { nameIn, paramNamed, paramsIn, parseParam } from '../../common/registry.js'
import { FSNAME_RE, MAX_TARGET_INDEX, targetName } from '../../protocol/names.js'

/**
 * A target directory's CONFIG, written by `lproxy format` (mkfs.lustre's role). One
 * directory holds one target, except that the MGS may share the MDT's, as with
 * `mkfs.lustre --mgs --mdt`.
 */
export interface TargetConfig {
  version: 1
  fsname: string
  uuid: string
  mgs: boolean
  mdt: boolean
  ost: boolean
  index: number
  /** Where the MGS is (NID spec); absent when this directory holds the MGS itself. */
  mgsnode?: string
  failnodes: string[]
  /** tunefs --servicenode: nodes that may serve the target, this one among them. */
  servicenodes?: string[]
  port: number
  params: Record<string, string>
  created: string
  /** tunefs --writeconf: the next registration replaces what the MGS knows of the target. */
  writeconf?: boolean
  /** Formatted with a shared key: the master key is KEY_FILE, and every RPC must be signed. */
  keyed?: boolean
}

export const CONFIG_FILE = 'CONFIG'
/** The filesystem's master key in a keyed target's directory (common/keyfile.ts). */
export const KEY_FILE = 'auth.key'

export class FormatError extends Error {}

export interface FormatOptions {
  dir: string
  fsname: string
  mgs: boolean
  mdt: boolean
  ost: boolean
  index?: number
  mgsnode?: string
  failnodes: string[]
  port?: number
  params: string[]
  reformat: boolean
  /** The filesystem's master key file: used, or made there (0600) if it does not exist. */
  keyFile?: string
  /** Make a new master key in the target directory alone. */
  genKey?: boolean
}

/** `--param key=value` settings, each checked by the parameter registry. */
export function parseParams(list: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const p of list) {
    const eq = p.indexOf('=')
    if (eq <= 0) throw new FormatError(`--param '${p}': expected key=value`)
    const k = p.slice(0, eq)
    const v = p.slice(eq + 1)
    const def = paramNamed('target', k)
    if (!def) throw new FormatError(`--param '${p}': unknown parameter '${k}' (known: ${paramsIn('target').map((d) => nameIn(d, 'target')).join(', ')})`)
    parseParam(def, 'target', v, (m) => new FormatError(`--param ${m}`))
    out[k] = v
  }
  return out
}

export async function formatTarget(o: FormatOptions): Promise<TargetConfig> {
  if (!FSNAME_RE.test(o.fsname)) throw new FormatError(`invalid --fsname '${o.fsname}': 1-8 letters, digits or '_'`)
  if (!o.mgs && !o.mdt && !o.ost) throw new FormatError('say what to format: --mgs, --mdt and/or --ost')
  if (o.ost && (o.mgs || o.mdt)) throw new FormatError('an OST cannot share its directory with the MGS or an MDT')
  const index = o.index ?? (o.mdt ? 0 : undefined)
  if ((o.mdt || o.ost) && index === undefined) throw new FormatError('--index is required for an OST')
  if (index !== undefined && (!Number.isInteger(index) || index < 0 || index > MAX_TARGET_INDEX))
    throw new FormatError(`invalid --index ${index}: 0..${MAX_TARGET_INDEX}`)
  if (o.mdt && index !== 0) throw new FormatError('only MDT index 0 is supported (one metadata target)')
  if (!o.mgs && !o.mgsnode) throw new FormatError('--mgsnode is required unless this directory holds the MGS (--mgs)')
  try {
    if (o.mgsnode) nidList(o.mgsnode)
    for (const f of o.failnodes) nidList(f)
  } catch (e) {
    if (e instanceof NidError) throw new FormatError(e.message)
    throw e
  }
  const port = o.port ?? DEFAULT_PORT
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new FormatError(`invalid --port ${o.port}`)
  const params = parseParams(o.params)
  if (params['failover.mode'] && !o.ost && !o.mdt) throw new FormatError('failover.mode applies to an MDT or OST')
  if (o.keyFile && o.genKey) throw new FormatError('--key-file and --gen-key: choose one')
  const master = o.keyFile ? await masterKey(o.keyFile, o.fsname) : o.genKey ? generateKey(o.fsname) : null

  const dir = path.resolve(o.dir)
  let st
  try {
    st = await fsp.stat(dir)
  } catch {
    st = null
  }
  if (st && !st.isDirectory()) throw new FormatError(`${dir} exists and is not a directory`)
  if (st) {
    const existing = await readConfig(dir).catch(() => undefined)
    const entries = await fsp.readdir(dir)
    if ((existing || entries.length) && !o.reformat) {
      const what = existing ? `target ${describe(existing)}` : `${entries.length} entries`
      throw new FormatError(`${dir} already holds ${what}; use --reformat to erase it`)
    }
    for (const e of entries) await fsp.rm(path.join(dir, e), { recursive: true, force: true })
  } else {
    await mkdirDurable(dir, 0o700)
  }
  const cfg: TargetConfig = {
    version: 1,
    fsname: o.fsname,
    uuid: randomUUID(),
    mgs: o.mgs,
    mdt: o.mdt,
    ost: o.ost,
    index: index ?? 0,
    mgsnode: o.mgsnode,
    failnodes: o.failnodes,
    port,
    params,
    created: new Date().toISOString(),
    ...(master ? { keyed: true } : {}),
  }
  if (master) await writeKeyFile(path.join(dir, KEY_FILE), master)
  await writeConfig(dir, cfg)
  await fsyncDir(dir)
  return cfg
}

/** CONFIG rewritten in place (tunefs, or the end of a writeconf), each write asked of `allowed` first. */
export async function writeConfig(dir: string, cfg: TargetConfig, allowed?: () => Promise<void>): Promise<void> {
  await writeFileAtomic(path.join(dir, CONFIG_FILE), JSON.stringify(cfg, null, 2) + '\n', allowed)
}

/** Every NID the target may be served on, as it registers them: failover and service nodes. */
export function peerNids(cfg: TargetConfig): string[] {
  return [...cfg.failnodes, ...(cfg.servicenodes ?? [])].flatMap((f) => nidList(f))
}

export function describe(c: TargetConfig): string {
  const names: string[] = []
  if (c.mgs) names.push('MGS')
  if (c.mdt) names.push(targetName(c.fsname, { kind: 'mdt', index: c.index }))
  if (c.ost) names.push(targetName(c.fsname, { kind: 'ost', index: c.index }))
  return names.join('+')
}

const ConfigSchema = z.object({
  version: z.literal(1),
  fsname: z.string().regex(FSNAME_RE),
  uuid: z.string(),
  mgs: z.boolean(),
  mdt: z.boolean(),
  ost: z.boolean(),
  index: z.number().int().min(0).max(MAX_TARGET_INDEX),
  mgsnode: z.string().optional(),
  failnodes: z.array(z.string()),
  servicenodes: z.array(z.string()).optional(),
  port: z.number().int().min(1).max(65535),
  params: z.record(z.string(), z.string()),
  created: z.string(),
  writeconf: z.boolean().optional(),
  keyed: z.boolean().optional(),
})

/** The master key at `file`, made there first if there is none (the first target formatted makes it, the others take it). */
async function masterKey(file: string, fsname: string): Promise<KeyFile> {
  try {
    await fsp.access(file)
  } catch {
    await writeKeyFile(file, generateKey(fsname)).catch((e: Error) => {
      throw new FormatError(`cannot make key file ${file}: ${e.message}`)
    })
  }
  const k = await readKeyFile(file).catch((e: Error) => {
    throw new FormatError(e.message)
  })
  if (k.cls !== 'master') throw new FormatError(`${file} holds a ${k.cls} key; a target is formatted with the filesystem's master key`)
  if (k.fsname !== fsname) throw new FormatError(`${file} is the key of filesystem ${k.fsname}, not ${fsname}`)
  return k
}

/** A keyed target's master key (null: formatted without a key). */
export async function readTargetKey(dir: string, cfg: TargetConfig): Promise<KeyFile | null> {
  if (!cfg.keyed) return null
  const k = await readKeyFile(path.join(dir, KEY_FILE)).catch((e: Error) => {
    throw new FormatError(`${describe(cfg)} was formatted with a shared key: ${e.message}`)
  })
  if (k.cls !== 'master' || k.fsname !== cfg.fsname) throw new FormatError(`${path.join(dir, KEY_FILE)} is not the master key of filesystem ${cfg.fsname}`)
  return k
}

export async function readConfig(dir: string): Promise<TargetConfig> {
  const file = path.join(dir, CONFIG_FILE)
  let raw: unknown
  try {
    raw = await readJson<unknown>(file)
  } catch (e) {
    throw new FormatError(`${file} is damaged (${(e as Error).message}); format the target again`)
  }
  if (raw === undefined || (raw as { version?: unknown }).version !== 1) throw new FormatError(`${dir} does not hold an lproxy target (no CONFIG); run 'lproxy format' first`)
  const cfg = ConfigSchema.safeParse(raw)
  if (!cfg.success) throw new FormatError(`${file} is damaged: ${cfg.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
  return cfg.data
}

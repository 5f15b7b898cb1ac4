import { promises as fsp } from 'node:fs'
import { hkdfSync, randomBytes } from 'node:crypto'
import { z } from 'zod'
import { writeFileExclusive } from './fsutil.js'

/**
 * Shared-key files, as Lustre's SSK key files and Heartbeat's authkeys: one key a file, 0600.
 * A filesystem has one `master` key, held by its servers (in each target directory); the keys
 * handed out are derived from it, one a class, so a holder of one cannot make another:
 *   fs    — clients (mounts, bench, demo): every ordinary RPC;
 *   node  — servers among themselves (the MDT's OSP, MGS registration);
 *   admin — the administrator's commands that change the MGS's configuration.
 * A server derives all three from the master, to check what it receives and to sign what it sends.
 */
export const KEY_CLASSES = ['fs', 'node', 'admin'] as const
export type KeyClass = (typeof KEY_CLASSES)[number]
export type KeyFileClass = KeyClass | 'master'

export interface KeyFile {
  cls: KeyFileClass
  fsname: string
  secret: Buffer
}

export class KeyFileError extends Error {}

const KEY_BYTES = 32

const keyFileSchema = z.object({
  lproxy_key: z.literal(1),
  class: z.enum(['master', ...KEY_CLASSES]),
  fsname: z.string().min(1).max(8),
  key: z.string().regex(new RegExp(`^[0-9a-f]{${KEY_BYTES * 2}}$`)),
})

export function generateKey(fsname: string): KeyFile {
  return { cls: 'master', fsname, secret: randomBytes(KEY_BYTES) }
}

/** A class's key from the master (HKDF-SHA256, the fsname as salt): one-way, so a client's fs key yields no other. */
export function deriveKey(master: KeyFile, cls: KeyClass): KeyFile {
  return { cls, fsname: master.fsname, secret: hkdf(master, cls) }
}

/**
 * The key of OST capabilities (protocol/capa.ts): the MDT makes them, the OSTs check them;
 * both derive it from the master, and it is never written to a file nor given to a client.
 */
export function deriveCapaKey(master: KeyFile): Buffer {
  return hkdf(master, 'capa')
}

function hkdf(master: KeyFile, cls: KeyClass | 'capa'): Buffer {
  if (master.cls !== 'master') throw new KeyFileError(`a ${cls} key is derived from the master key, not from a ${master.cls} key`)
  return Buffer.from(hkdfSync('sha256', master.secret, master.fsname, `lproxy ${cls} key`, KEY_BYTES))
}

/** The key a holder of `k` signs with: its own, or from a master key the class asked for. */
export function signingKeyOf(k: KeyFile, want: KeyClass): { cls: KeyClass; secret: Buffer } {
  const own = k.cls === 'master' ? deriveKey(k, want) : k
  return { cls: own.cls as KeyClass, secret: own.secret }
}

/** A key file's signing key, `want`'s class if it is the master key (a server's). */
export async function loadSigningKey(file: string, want: KeyClass): Promise<{ cls: KeyClass; secret: Buffer }> {
  return signingKeyOf(await readKeyFile(file), want)
}

/**
 * Written 0600 from the start (never chmod'ed after) and whole: a kill midway leaves no empty
 * or torn key file to be refused later, and an existing file is never replaced (EEXIST).
 */
export async function writeKeyFile(file: string, k: KeyFile): Promise<void> {
  await writeFileExclusive(file, JSON.stringify({ lproxy_key: 1, class: k.cls, fsname: k.fsname, key: k.secret.toString('hex') }) + '\n')
}

/** A key file, refused when anyone but its owner may read it (a shared key others can read authenticates nobody). */
export async function readKeyFile(file: string): Promise<KeyFile> {
  let st
  try {
    st = await fsp.stat(file)
  } catch (e) {
    throw new KeyFileError(`cannot read key file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  if (!st.isFile()) throw new KeyFileError(`key file ${file} is not a regular file`)
  if (st.mode & 0o077)
    throw new KeyFileError(`key file ${file} is readable or writable by group or others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`)
  let raw: unknown
  try {
    raw = JSON.parse(await fsp.readFile(file, 'utf8'))
  } catch (e) {
    throw new KeyFileError(`key file ${file} does not parse: ${(e as Error).message}`)
  }
  const k = keyFileSchema.safeParse(raw)
  if (!k.success) throw new KeyFileError(`${file} is not an lproxy key file: ${k.error.issues.map((i) => `${i.path.join('.') || 'file'}: ${i.message}`).join('; ')}`)
  return { cls: k.data.class, fsname: k.data.fsname, secret: Buffer.from(k.data.key, 'hex') }
}

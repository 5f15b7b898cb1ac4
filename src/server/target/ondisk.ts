import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { crc32 } from '@node-rs/crc32'
import { z } from 'zod'
import type { Logger } from '../../common/log.js'
import { writeFileAtomic } from '../../common/fsutil.js'
import { LpError } from '../../protocol/errno.js'
import type { Backend } from './backend.js'
import type { ClientMeta, LastRcvdImage } from './lastrcvd.js'
import type { Fence } from './mmp.js'
import { scanJournal, setAside, type BatchRecord, type JournalScan } from './journal.js'

/**
 * What a target finds on disk when it starts: the newest valid checkpoint generation, and
 * the journal after it.
 *
 * CHECKPOINT is `LPCK1 <crc32 hex> <length>\n` followed by its JSON, so that a torn or
 * damaged one is known as such. Writing a new one first copies the one in use to
 * CHECKPOINT.prev, and journal files are kept from the previous generation's on: when the
 * newest is unreadable, the previous one and its (longer) journal give the same state.
 */
export const CHECKPOINT = 'CHECKPOINT'
export const CHECKPOINT_PREV = 'CHECKPOINT.prev'

export interface CheckpointFile {
  transno: number
  journal_seq: number
  lastrcvd: LastRcvdImage
  backend: unknown
}

const CheckpointSchema = z.object({
  transno: z.number().int().nonnegative(),
  journal_seq: z.number().int().positive(),
  lastrcvd: z.looseObject({
    clients: z.array(z.looseObject({ uuid: z.string(), handle: z.string(), lastTransno: z.number(), lastXid: z.number() })),
    replies: z.array(z.looseObject({ uuid: z.string(), xid: z.number(), transno: z.number(), body: z.unknown() })),
  }),
  backend: z.unknown().optional(),
})

/** The journal's JSON for one batch (what the committer writes and a restart reads back). */
export interface BatchJson {
  last: number
  ents: Array<{ t: number; c: string; x: number; s: unknown; r: Array<{ rec: Record<string, unknown>; d?: number }> } | { m: ClientMeta }>
}

/** Enough of a batch's shape to walk it; each entry is the backend's to interpret. */
const TxnEntry = z.looseObject({
  t: z.number().int(),
  c: z.string(),
  x: z.number(),
  r: z.array(z.looseObject({ rec: z.record(z.string(), z.unknown()), d: z.number().int().nonnegative().optional() })),
})
export const BatchSchema = z.looseObject({
  last: z.number().int().nonnegative(),
  ents: z.array(z.union([TxnEntry, z.looseObject({ m: z.unknown() })])),
}) as unknown as z.ZodType<BatchJson>

const FRESH: CheckpointFile = { transno: 0, journal_seq: 1, lastrcvd: { clients: [], replies: [] }, backend: undefined }

const TAG = 'LPCK1'

export function encodeCheckpoint(cp: CheckpointFile): Buffer {
  const body = Buffer.from(JSON.stringify(cp))
  return Buffer.concat([Buffer.from(`${TAG} ${(crc32(body) >>> 0).toString(16).padStart(8, '0')} ${body.length}\n`), body])
}

/** The checkpoint in `bytes`, or why it is not one. */
export function decodeCheckpoint(bytes: Buffer): CheckpointFile | string {
  let body: Buffer
  if (bytes[0] === 0x7b /* '{' */) {
    // Written before checkpoints carried a checksum: JSON and its shape are all there is to check.
    body = bytes
  } else {
    const nl = bytes.indexOf(0x0a)
    const m = nl > 0 ? new RegExp(`^${TAG} ([0-9a-f]{8}) (\\d+)$`).exec(bytes.subarray(0, nl).toString('latin1')) : null
    if (!m) return 'no checkpoint header'
    body = bytes.subarray(nl + 1)
    if (body.length !== Number(m[2])) return `${body.length} bytes of JSON where the header says ${m[2]} (truncated?)`
    if ((crc32(body) >>> 0).toString(16).padStart(8, '0') !== m[1]) return 'checksum mismatch'
  }
  let json: unknown
  try {
    json = JSON.parse(body.toString('utf8'))
  } catch (e) {
    return `not JSON (${(e as Error).message})`
  }
  const v = CheckpointSchema.safeParse(json)
  if (!v.success) return `not a checkpoint (${v.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')})`
  return v.data as CheckpointFile
}

/** The checkpoint generation in use, and writing the next one. */
export class Checkpoints {
  private constructor(
    private readonly dir: string,
    private readonly fence: Fence | undefined,
    private current: { cp: CheckpointFile; bytes: Buffer },
    private previous: CheckpointFile | null,
  ) {}

  /**
   * Load the newest checkpoint generation that is whole and whose backend state loads;
   * a damaged newest one falls back to the previous with a loud warning. Throws EUCLEAN
   * naming the files when neither is usable.
   */
  static async load(o: { dir: string; name: string; backend: Backend; log: Logger; fence?: Fence }): Promise<Checkpoints> {
    const read = async (name: string) => {
      const file = path.join(o.dir, name)
      try {
        return { file, bytes: await fsp.readFile(file) }
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { file, bytes: null }
        throw e
      }
    }
    const gens = [await read(CHECKPOINT), await read(CHECKPOINT_PREV)]
    if (!gens[0]!.bytes && !gens[1]!.bytes) {
      // Freshly formatted: the journal from its first file holds everything.
      await o.backend.load(undefined)
      return new Checkpoints(o.dir, o.fence, { cp: FRESH, bytes: encodeCheckpoint(FRESH) }, null)
    }
    const why: string[] = []
    for (const [i, g] of gens.entries()) {
      if (!g.bytes) {
        why.push(`${g.file}: missing`)
        continue
      }
      const cp = decodeCheckpoint(g.bytes)
      if (typeof cp === 'string') {
        why.push(`${g.file}: ${cp}`)
        continue
      }
      try {
        await o.backend.load(cp.backend)
      } catch (e) {
        why.push(`${g.file}: its backend state does not load (${(e as Error).message})`)
        continue
      }
      if (i > 0)
        o.log.error(
          { transno: cp.transno, journal_seq: cp.journal_seq },
          `${o.name}: ${why.join('; ')}: falling back to the previous checkpoint generation ${g.file} (transno ${cp.transno}) and the journal from file ${cp.journal_seq} on`,
        )
      // A fallback's own predecessor is gone; the next checkpoint makes this one the previous.
      return new Checkpoints(o.dir, o.fence, { cp, bytes: g.bytes }, null)
    }
    throw new LpError('EUCLEAN', `${o.name}: no usable checkpoint, refusing to start: ${why.join('; ')}`)
  }

  get cp(): CheckpointFile {
    return this.current.cp
  }

  /** The backend states the checkpoints on disk refer to (snapshots other than these may go). */
  liveBackendRefs(): unknown[] {
    return [this.current.cp.backend, ...(this.previous ? [this.previous.backend] : [])]
  }

  /**
   * Record a new generation; the one in use becomes the previous. Returns the first journal
   * file still needed (the previous generation's): older ones may go.
   */
  async write(cp: CheckpointFile): Promise<number> {
    const guard = this.fence && (() => this.fence!.check())
    const bytes = encodeCheckpoint(cp)
    await writeFileAtomic(path.join(this.dir, CHECKPOINT_PREV), this.current.bytes, guard)
    await writeFileAtomic(path.join(this.dir, CHECKPOINT), bytes, guard)
    this.previous = this.current.cp
    this.current = { cp, bytes }
    return this.previous.journal_seq
  }
}

function transnos(records: BatchRecord<BatchJson>[]): string {
  const ts = records.flatMap((r) => r.json.ents.flatMap((e) => ('t' in e ? [e.t] : [])))
  return ts.length ? `transnos ${Math.min(...ts)}-${Math.max(...ts)}` : 'no transactions'
}

/**
 * The journal after the checkpoint, as a start may use it: a torn tail of the newest file is
 * dropped with a warning; damage before it refuses the start (EUCLEAN, naming the file and
 * offset), unless `discardCorrupt`: then everything from the damage on is set aside and the
 * target starts from the last good record, logging exactly what it gave up.
 */
export async function journalForStart(o: {
  dir: string
  name: string
  fromSeq: number
  /** The transno the checkpoint covers, for the messages. */
  base: number
  discardCorrupt: boolean
  log: Logger
  clock: { wallNow(): number }
  fence?: Fence
}): Promise<JournalScan<BatchJson>> {
  const scan = await scanJournal(o.dir, o.fromSeq, BatchSchema)
  if (scan.tornBytes) o.log.warn({ bytes: scan.tornBytes, file: scan.lastSeq }, `${o.name}: journal: dropping a torn tail of ${scan.tornBytes} bytes (an uncommitted batch cut by a crash)`)
  const { damage, beyond } = scan
  if (!damage || !beyond) return scan
  const good = Math.max(o.base, ...scan.records.map((r) => r.json.last))
  const where = `${damage.file} at byte ${damage.offset} (${damage.reason})`
  const lost = `${beyond.records.length} valid records (${transnos(beyond.records)}) follow it in ${beyond.regions.map((r) => `${path.basename(r.file)} bytes ${r.from}-${r.to}`).join(', ')}`
  if (!o.discardCorrupt)
    throw new LpError(
      'EUCLEAN',
      `${o.name}: journal damaged before its tail: ${where}; ${lost}. Refusing to start: committed transactions would be lost. ` +
        `Repair or restore the journal, or start with --discard-corrupt-journal to go on from transno ${good} without them`,
    )
  const kept = await setAside(o.dir, beyond.regions, o.clock.wallNow(), o.fence)
  o.log.error(
    { file: damage.file, offset: damage.offset, transno: good, dropped: beyond.regions, kept },
    `${o.name}: --discard-corrupt-journal: journal damaged at ${where}; starting from transno ${good}. Dropped: the damaged record and ${lost}; ` +
      `copies kept as ${kept.map((k) => path.basename(k)).join(', ')}. Files the backend had already updated may still hold some of their changes`,
  )
  return { ...scan, damage: undefined, beyond: undefined }
}

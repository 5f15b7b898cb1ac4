import { promises as fsp, constants } from 'node:fs'
import path from 'node:path'
import { crc32 } from '@node-rs/crc32'
import type { z } from 'zod'
import { fsyncDir, mkdirDurable, writeFileAtomic, writevAll } from '../../common/fsutil.js'
import { LpError } from '../../protocol/errno.js'
import { bulkLength } from '../../protocol/wire.js'
import type { Fence } from './mmp.js'

/**
 * The target's journal (jbd2's role): commit batches appended to `journal/<seq>.jnl`, each
 * written and fdatasync'ed as one record. A record is
 *   magic u32 | payload length u32 | crc32(position, payload) u32 | payload
 * and the payload is a JSON header (u32 length + JSON) followed by the bulk data it refers to.
 * The CRC covers the record's place (file number and offset) too, so a record's bytes found
 * anywhere else (in a later record's bulk data, say) are never taken for a record.
 *
 * On restart the records are read in order. A crash can only tear the tail of the newest
 * file (records are appended one at a time, each synced before the next): a bad record there
 * with nothing valid after it is dropped. A bad record anywhere else is damage: the scan
 * reports where, and what valid records it would cost to go on without it.
 */
const MAGIC = 0x4c504a32 // "LPJ2": CRC bound to the record's position
const MAGIC_V1 = 0x4c504a42 // "LPJB": CRC of the payload alone, as written before
const HDR = 12
/** The payload length is a u32 on disk. */
export const MAX_RECORD_PAYLOAD = 0xffff_ffff

export interface BatchRecord<T> {
  json: T
  data: Buffer
}

function journalFile(dir: string, seq: number): string {
  return path.join(dir, `${String(seq).padStart(8, '0')}.jnl`)
}

/**
 * Records are written at their offset, not with O_APPEND: a failed record that could not be
 * cut off is overwritten by the next, whose CRC binds it there (at EOF it would follow it).
 */
const OPEN_FLAGS = constants.O_RDWR | constants.O_CREAT

/** The CRC seed of a record at `off` of file `seq`. */
function placeCrc(seq: number, off: number): number {
  const b = Buffer.allocUnsafe(12)
  b.writeUInt32BE(seq >>> 0, 0)
  b.writeUInt32BE(Math.floor(off / 2 ** 32), 4)
  b.writeUInt32BE(off >>> 0, 8)
  return crc32(b)
}

export class Journal {
  private fh: fsp.FileHandle | null = null
  private size = 0

  private constructor(
    private readonly dir: string,
    private seq: number,
    private readonly fence: Fence | undefined,
  ) {}

  /** Open for appending at `seq`, truncating anything past `validBytes` (a torn tail). */
  static async openForAppend(dir: string, seq: number, validBytes: number, fence?: Fence): Promise<Journal> {
    await fence?.check()
    await mkdirDurable(dir)
    const j = new Journal(dir, seq, fence)
    j.fh = await fsp.open(journalFile(dir, seq), OPEN_FLAGS)
    const st = await j.fh.stat()
    if (st.size > validBytes) {
      await j.fh.truncate(validBytes)
      await j.fh.sync()
    }
    j.size = validBytes
    await fsyncDir(dir)
    return j
  }

  get currentSeq(): number {
    return this.seq
  }

  get bytes(): number {
    return this.size
  }

  /** Append one record: `head` is its JSON header, `data` the bulk it refers to. */
  async append(head: string, data: Buffer[]): Promise<void> {
    const h = Buffer.from(head)
    const len = 4 + h.length + bulkLength(data)
    // Refused before a byte is written: the length would not fit its u32 on disk.
    if (len > MAX_RECORD_PAYLOAD) throw new LpError('EFBIG', `a journal record of ${len} bytes exceeds the format's limit of ${MAX_RECORD_PAYLOAD}`)
    await this.fence?.check()
    const hlen = Buffer.allocUnsafe(4)
    hlen.writeUInt32BE(h.length, 0)
    const parts = [hlen, h, ...data]
    let crc = placeCrc(this.seq, this.size)
    for (const p of parts) crc = crc32(p, crc)
    const hdr = Buffer.allocUnsafe(HDR)
    hdr.writeUInt32BE(MAGIC, 0)
    hdr.writeUInt32BE(len, 4)
    hdr.writeUInt32BE(crc >>> 0, 8)
    const fh = this.fh!
    try {
      await writevAll(fh, [hdr, ...parts], this.size)
      await fh.datasync()
    } catch (e) {
      // Cut off what part of the record got written (e.g. ENOSPC): the next record goes in its
      // place, but a restart before it would find a torn tail or, written whole, a record never
      // acknowledged. Not once fenced: the target belongs to another node now.
      await (this.fence?.check() ?? Promise.resolve()).then(() => fh.truncate(this.size)).catch(() => undefined)
      throw e
    }
    this.size += HDR + len
  }

  /**
   * Start a new journal file (after a checkpoint made the older ones unnecessary). Records go
   * there only once its entry is durable: failed, the journal goes on appending where it was.
   */
  async rotate(): Promise<number> {
    await this.fence?.check()
    const fh = await fsp.open(journalFile(this.dir, this.seq + 1), OPEN_FLAGS)
    try {
      await fsyncDir(this.dir)
    } catch (e) {
      await fh.close()
      throw e
    }
    const old = this.fh
    this.fh = fh
    this.seq += 1
    this.size = 0
    await old?.close()
    return this.seq
  }

  /** Remove journal files older than `seq`. */
  async dropBefore(seq: number): Promise<void> {
    for (const name of await fsp.readdir(this.dir)) {
      const n = parseSeq(name)
      if (n === null || n >= seq) continue
      await this.fence?.check()
      await fsp.rm(path.join(this.dir, name), { force: true })
    }
  }

  async close(): Promise<void> {
    await this.fh?.close()
    this.fh = null
  }
}

function parseSeq(name: string): number | null {
  const m = /^(\d{8})\.jnl$/.exec(name)
  return m ? Number(m[1]) : null
}

/** Where the journal stops being trustworthy before its tail. */
export interface JournalDamage {
  file: string
  offset: number
  reason: string
}

/** A stretch of journal given up past damage. */
export interface DroppedRegion {
  file: string
  from: number
  to: number
}

export interface JournalScan<T> {
  /** Every whole record up to the first bad one, in order. */
  records: BatchRecord<T>[]
  /** The journal file to append to, and how many of its bytes hold the records above. */
  lastSeq: number
  validBytes: number
  /** A torn tail of the newest file (a crash cut its last record): dropped. */
  tornBytes: number
  /** Damage before the tail: set, the journal holds more than `records` but cannot be trusted past it. */
  damage?: JournalDamage
  /** With damage: the stretches past it, and the valid records found in them (what going on without them loses). */
  beyond?: { regions: DroppedRegion[]; records: BatchRecord<T>[] }
}

type Parsed<T> = { rec: BatchRecord<T>; next: number } | { bad: string }

function parseAt<T>(buf: Buffer, off: number, seq: number, schema?: z.ZodType<T>): Parsed<T> {
  if (off + HDR > buf.length) return { bad: 'a record header cut short' }
  const magic = buf.readUInt32BE(off)
  if (magic !== MAGIC && magic !== MAGIC_V1) return { bad: 'no record magic' }
  const len = buf.readUInt32BE(off + 4)
  if (len < 4 || off + HDR + len > buf.length) return { bad: `a record of ${len} bytes runs past the end of the file` }
  const payload = buf.subarray(off + HDR, off + HDR + len)
  if (crc32(payload, magic === MAGIC ? placeCrc(seq, off) : 0) >>> 0 !== buf.readUInt32BE(off + 8)) return { bad: 'CRC mismatch' }
  const hlen = payload.readUInt32BE(0)
  if (4 + hlen > len) return { bad: 'record header longer than the record' }
  let json: unknown
  try {
    json = JSON.parse(payload.subarray(4, 4 + hlen).toString('utf8'))
  } catch {
    return { bad: 'record header is not JSON' }
  }
  if (schema) {
    const v = schema.safeParse(json)
    if (!v.success) return { bad: `record header is not a batch (${v.error.issues[0]?.message ?? 'invalid'})` }
    json = v.data
  }
  return { rec: { json: json as T, data: payload.subarray(4 + hlen) }, next: off + HDR + len }
}

/** Every valid record of `buf` at or after `from`, found wherever it starts (past damage). */
function salvage<T>(buf: Buffer, from: number, seq: number, schema?: z.ZodType<T>): BatchRecord<T>[] {
  const out: BatchRecord<T>[] = []
  const magics = [MAGIC, MAGIC_V1].map((m) => {
    const b = Buffer.allocUnsafe(4)
    b.writeUInt32BE(m, 0)
    return b
  })
  let at = from
  while (at < buf.length) {
    const cands = magics.map((m) => buf.indexOf(m, at)).filter((i) => i >= 0)
    if (!cands.length) break
    const c = Math.min(...cands)
    const p = parseAt(buf, c, seq, schema)
    if ('rec' in p) {
      out.push(p.rec)
      at = p.next
    } else at = c + 1
  }
  return out
}

/**
 * Read every whole record of journal files numbered `fromSeq` and later, in order, up to a
 * torn tail of the newest file (dropped) or damage (reported, with what lies past it).
 */
export async function scanJournal<T>(dir: string, fromSeq: number, schema?: z.ZodType<T>): Promise<JournalScan<T>> {
  const names = await fsp.readdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[]
    throw e
  })
  const seqs = names
    .map(parseSeq)
    .filter((n): n is number => n !== null && n >= fromSeq)
    .sort((a, b) => a - b)
  const scan: JournalScan<T> = { records: [], lastSeq: fromSeq, validBytes: 0, tornBytes: 0 }
  // The checkpoint's own journal file is made before the checkpoint is written: it must be there.
  if (fromSeq > 1 && seqs[0] !== fromSeq) {
    const regions = seqs.map((s) => ({ file: journalFile(dir, s), from: 0, to: -1 }))
    return giveUp(scan, { file: journalFile(dir, fromSeq), offset: 0, reason: 'journal file missing' }, regions, seqs, dir, schema)
  }
  for (let i = 0; i < seqs.length; i++) {
    const seq = seqs[i]!
    const file = journalFile(dir, seq)
    if (i > 0 && seq !== seqs[i - 1]! + 1) {
      const rest = seqs.slice(i)
      const regions = rest.map((s) => ({ file: journalFile(dir, s), from: 0, to: -1 }))
      return giveUp(scan, { file: journalFile(dir, seqs[i - 1]! + 1), offset: 0, reason: 'journal file missing' }, regions, rest, dir, schema)
    }
    const buf = await fsp.readFile(file)
    scan.lastSeq = seq
    let off = 0
    let bad: string | null = null
    while (off < buf.length) {
      const p = parseAt(buf, off, seq, schema)
      if ('bad' in p) {
        bad = p.bad
        break
      }
      scan.records.push(p.rec)
      off = p.next
    }
    scan.validBytes = off
    if (bad === null) continue
    const after = salvage(buf, off + 1, seq, schema)
    if (i === seqs.length - 1 && after.length === 0) {
      scan.tornBytes = buf.length - off
      return scan
    }
    const rest = seqs.slice(i + 1)
    const regions = [{ file, from: off, to: buf.length }, ...rest.map((s) => ({ file: journalFile(dir, s), from: 0, to: -1 }))]
    const s = await giveUp(scan, { file, offset: off, reason: bad }, regions, rest, dir, schema)
    s.beyond!.records.unshift(...after)
    return s
  }
  return scan
}

/** Damage: record it, with the valid records of the later files (sizes filled in). */
async function giveUp<T>(
  scan: JournalScan<T>,
  damage: JournalDamage,
  regions: DroppedRegion[],
  laterSeqs: number[],
  dir: string,
  schema?: z.ZodType<T>,
): Promise<JournalScan<T>> {
  const records: BatchRecord<T>[] = []
  for (const seq of laterSeqs) {
    const buf = await fsp.readFile(journalFile(dir, seq))
    records.push(...salvage(buf, 0, seq, schema))
    const r = regions.find((x) => x.file === journalFile(dir, seq))!
    r.to = buf.length
  }
  return { ...scan, damage, beyond: { regions, records } }
}

/**
 * Going on past damage (the admin said so): keep a copy of every file given up, as
 * `<name>.corrupt-<time>`, so that nothing is destroyed that someone may want to look at;
 * the damaged file itself is then cut at the damage by openForAppend.
 */
export async function setAside(dir: string, regions: DroppedRegion[], stamp: number, fence?: Fence): Promise<string[]> {
  const kept: string[] = []
  for (const r of regions) {
    await fence?.check()
    const to = `${r.file}.corrupt-${stamp}`
    if (r.from === 0) await fsp.rename(r.file, to)
    else await writeFileAtomic(to, await fsp.readFile(r.file))
    kept.push(to)
  }
  await fsyncDir(dir)
  return kept
}

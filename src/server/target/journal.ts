import { promises as fsp } from 'node:fs'
import path from 'node:path'
import { crc32 } from '@node-rs/crc32'
import { fsyncDir, writevAll } from '../../common/fsutil.js'

/**
 * The target's journal (jbd2's role): commit batches appended to `journal/<seq>.jnl`, each
 * written and fdatasync'ed as one record. A record is
 *   magic u32 | payload length u32 | crc32(payload) u32 | payload
 * and the payload is a JSON header (u32 length + JSON) followed by the bulk data it refers to.
 * On restart the records are read in order up to the first one that is short or fails its
 * CRC (a torn tail from a crash), so what survives is always a prefix of the committed batches.
 */
const MAGIC = 0x4c504a42 // "LPJB"
const HDR = 12

export interface BatchRecord<T> {
  json: T
  data: Buffer
}

export class Journal {
  private fh: fsp.FileHandle | null = null
  private size = 0

  private constructor(
    private readonly dir: string,
    private seq: number,
  ) {}

  /** Open for appending at `seq`, truncating anything past `validBytes` (a torn tail). */
  static async openForAppend(dir: string, seq: number, validBytes: number): Promise<Journal> {
    await fsp.mkdir(dir, { recursive: true })
    const j = new Journal(dir, seq)
    const file = j.file(seq)
    j.fh = await fsp.open(file, 'a+')
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

  private file(seq: number): string {
    return path.join(this.dir, `${String(seq).padStart(8, '0')}.jnl`)
  }

  async append(json: unknown, data: Buffer[]): Promise<void> {
    const head = Buffer.from(JSON.stringify(json))
    const hlen = Buffer.allocUnsafe(4)
    hlen.writeUInt32BE(head.length, 0)
    const parts = [hlen, head, ...data]
    let len = 0
    let crc = 0
    for (const p of parts) {
      len += p.length
      crc = crc32(p, crc)
    }
    const hdr = Buffer.allocUnsafe(HDR)
    hdr.writeUInt32BE(MAGIC, 0)
    hdr.writeUInt32BE(len, 4)
    hdr.writeUInt32BE(crc >>> 0, 8)
    const fh = this.fh!
    const total = HDR + len
    try {
      await writevAll(fh, [hdr, ...parts], null)
      await fh.datasync()
    } catch (e) {
      // Cut off what part of the record got written (e.g. ENOSPC), or the next record would
      // follow a torn one and be lost at the next scan.
      await fh.truncate(this.size).catch(() => undefined)
      throw e
    }
    this.size += total
  }

  /** Start a new journal file (after a checkpoint made the older ones unnecessary). */
  async rotate(): Promise<number> {
    await this.fh?.close()
    this.seq += 1
    this.fh = await fsp.open(this.file(this.seq), 'a+')
    this.size = 0
    await fsyncDir(this.dir)
    return this.seq
  }

  /** Remove journal files older than `seq`. */
  async dropBefore(seq: number): Promise<void> {
    for (const name of await fsp.readdir(this.dir)) {
      const n = parseSeq(name)
      if (n !== null && n < seq) await fsp.rm(path.join(this.dir, name), { force: true })
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

export interface JournalScan<T> {
  records: BatchRecord<T>[]
  /** The last journal file and how many of its bytes hold whole records. */
  lastSeq: number
  validBytes: number
  tornBytes: number
}

/** Read every whole record of journal files numbered `fromSeq` and later, in order. */
export async function scanJournal<T>(dir: string, fromSeq: number): Promise<JournalScan<T>> {
  await fsp.mkdir(dir, { recursive: true })
  const seqs = (await fsp.readdir(dir))
    .map(parseSeq)
    .filter((n): n is number => n !== null && n >= fromSeq)
    .sort((a, b) => a - b)
  const records: BatchRecord<T>[] = []
  let lastSeq = fromSeq
  let validBytes = 0
  let tornBytes = 0
  for (const seq of seqs) {
    const buf = await fsp.readFile(path.join(dir, `${String(seq).padStart(8, '0')}.jnl`))
    let off = 0
    let torn = false
    while (off + HDR <= buf.length) {
      if (buf.readUInt32BE(off) !== MAGIC) break
      const len = buf.readUInt32BE(off + 4)
      const crc = buf.readUInt32BE(off + 8)
      if (off + HDR + len > buf.length) break
      const payload = buf.subarray(off + HDR, off + HDR + len)
      if (crc32(payload) >>> 0 !== crc) break
      const hlen = payload.readUInt32BE(0)
      records.push({
        json: JSON.parse(payload.subarray(4, 4 + hlen).toString('utf8')) as T,
        data: payload.subarray(4 + hlen),
      })
      off += HDR + len
    }
    if (off < buf.length) torn = true
    lastSeq = seq
    validBytes = off
    tornBytes = buf.length - off
    // A torn record can only be the very tail of the newest file; anything after it is not trusted.
    if (torn) break
  }
  return { records, lastSeq, validBytes, tornBytes }
}

import { describe, it, expect } from 'vitest'
import { parseNid, formatNid, parseNidSpec, nidList, nidHost, nidToken, NidError, lndOf } from '../../src/protocol/nid.js'
import { targetName, shortName, parseTargetName, targetUuid } from '../../src/protocol/names.js'
import { LpError, isLpError, toStatus, errnoOf, errnoName } from '../../src/protocol/errno.js'
import {
  encodeFrame,
  decodeFrameChunks,
  FrameError,
  encodeReqHeader,
  decodeReqHeader,
  encodeReplyHeader,
  decodeReplyHeader,
  H,
  type ReqHeader,
} from '../../src/protocol/wire.js'
import { MAX_NIOBUFS, MAX_SYMLINK, MAX_TIME_MS, OPS, nameError, targetError } from '../../src/protocol/ops.js'

describe('NIDs', () => {
  it('parses host@tcp and host@tcpN, with names or IPv4 addresses', () => {
    expect(parseNid('127.0.1.1@tcp')).toEqual({ host: '127.0.1.1', net: 'tcp' })
    expect(parseNid('mds16@tcp0')).toEqual({ host: 'mds16', net: 'tcp0' })
    expect(parseNid('  oss-2.example.com@tcp12 ')).toEqual({ host: 'oss-2.example.com', net: 'tcp12' })
    expect(formatNid(parseNid('mds16@tcp0'))).toBe('mds16@tcp0')
    expect(nidHost('10.1.2.3@tcp1')).toBe('10.1.2.3')
  })

  it('selects the transport by the network type: tcp[N] the binary messages, http[N] HTTP', () => {
    expect(parseNid('mds16@http')).toEqual({ host: 'mds16', net: 'http' })
    expect(nidList('a@http1:b@tcp')).toEqual(['a@http1', 'b@tcp'])
    expect(['a@tcp', 'a@tcp0', 'a@tcp12', 'a@http', 'a@http0'].map(lndOf)).toEqual(['tcp', 'tcp', 'tcp', 'http', 'http'])
    expect(() => parseNid('a@https')).toThrow(/network 'https' is not supported/)
  })

  it.each([
    ['', /expected host@tcp/],
    ['mds16', /expected host@tcp/],
    ['@tcp', /expected host@tcp/],
    ['mds16@', /network '' is not supported/],
    ['mds16@o2ib', /network 'o2ib' is not supported/],
    ['mds16@TCP', /network 'TCP' is not supported/],
    ['mds16@tcpx', /network 'tcpx' is not supported/],
    ['a@b@tcp', /'a@b' is not a host name/],
    ['-mds@tcp', /not a host name/],
    ['mds-@tcp', /not a host name/],
    ['md_s@tcp', /not a host name/],
    ['a..b@tcp', /not a host name/],
    ['host name@tcp', /not a host name/],
    ['127.0.0.256@tcp', /not a host name or IPv4 address/],
    ['1.2.3@tcp', /not a host name or IPv4 address/],
    ['999.1.1.1@tcp', /not a host name or IPv4 address/],
  ])('rejects %j, saying what is wrong', (text, why) => {
    expect(() => parseNid(text)).toThrow(NidError)
    expect(() => parseNid(text)).toThrow(why)
  })

  it("splits a NID spec: ':' separates nodes, ',' the NIDs of one node", () => {
    expect(parseNidSpec('a@tcp')).toEqual([[{ host: 'a', net: 'tcp' }]])
    expect(parseNidSpec('a@tcp,a2@tcp1:b@tcp')).toEqual([
      [
        { host: 'a', net: 'tcp' },
        { host: 'a2', net: 'tcp1' },
      ],
      [{ host: 'b', net: 'tcp' }],
    ])
    expect(nidList('mds16@tcp0:mds17@tcp0')).toEqual(['mds16@tcp0', 'mds17@tcp0'])
    // Flattened in order, duplicates dropped.
    expect(nidList('a@tcp,a2@tcp:b@tcp:a@tcp')).toEqual(['a@tcp', 'a2@tcp', 'b@tcp'])
  })

  it.each(['', '   ', 'a@tcp:', ':a@tcp', 'a@tcp::b@tcp', 'a@tcp,:b@tcp', 'a@tcp,b', 'a@tcp:b@ib0'])('rejects the spec %j', (spec) => {
    expect(() => parseNidSpec(spec)).toThrow(NidError)
    expect(() => nidList(spec)).toThrow(NidError)
  })

  it('makes file-name-safe tokens', () => {
    expect(nidToken('127.0.1.1@tcp')).toBe('127.0.1.1_tcp')
    expect(nidToken('a/b@tcp')).toBe('a_b_tcp')
  })
})

describe('target names', () => {
  it("names targets as Lustre does (<fsname>-OST%04x)", () => {
    expect(targetName('spfs', { kind: 'mdt', index: 0 })).toBe('spfs-MDT0000')
    expect(targetName('spfs', { kind: 'ost', index: 1 })).toBe('spfs-OST0001')
    expect(targetName('spfs', { kind: 'ost', index: 10 })).toBe('spfs-OST000a')
    expect(targetName('spfs', { kind: 'ost', index: 0xbeef })).toBe('spfs-OSTbeef')
    expect(targetName('spfs', { kind: 'mgs', index: 0 })).toBe('MGS')
    expect(shortName({ kind: 'ost', index: 12 })).toBe('ost12')
    expect(shortName({ kind: 'mgs', index: 0 })).toBe('mgs')
    expect(targetUuid('spfs-OST0001')).toBe('spfs-OST0001_UUID')
  })

  it('parses full, bare and short names', () => {
    expect(parseTargetName('spfs-OST0002')).toEqual({ kind: 'ost', index: 2 })
    expect(parseTargetName('OST0002')).toEqual({ kind: 'ost', index: 2 })
    expect(parseTargetName('spfs-OST000a')).toEqual({ kind: 'ost', index: 10 })
    expect(parseTargetName('lustre-MDT0000')).toEqual({ kind: 'mdt', index: 0 })
    expect(parseTargetName('ost2')).toEqual({ kind: 'ost', index: 2 })
    expect(parseTargetName('OST12')).toEqual({ kind: 'ost', index: 12 })
    expect(parseTargetName('mdt0')).toEqual({ kind: 'mdt', index: 0 })
    expect(parseTargetName('MGS')).toEqual({ kind: 'mgs', index: 0 })
    expect(parseTargetName('mgs')).toEqual({ kind: 'mgs', index: 0 })
    expect(parseTargetName('ost65535')).toEqual({ kind: 'ost', index: 65535 })
    // Four digits are Lustre's hex index; any other count is the decimal short form.
    expect(parseTargetName('ost0010')).toEqual({ kind: 'ost', index: 16 })
    expect(parseTargetName('ost010')).toEqual({ kind: 'ost', index: 10 })
  })

  it('round-trips every kind of name', () => {
    for (const index of [0, 1, 9, 10, 15, 16, 255, 4096, 0xffff])
      for (const kind of ['mdt', 'ost'] as const) expect(parseTargetName(targetName('fs_1', { kind, index }))).toEqual({ kind, index })
  })

  it.each(['', 'ost', 'ost-1', 'ost65536', 'ostx', 'toolongname-OST0001', 'spfs-OST000g', 'spfs-ost2', 'mgs0', 'xdt0'])(
    'rejects %j',
    (s) => expect(parseTargetName(s)).toBeNull(),
  )
})

describe('errno mapping', () => {
  it('carries Linux errnos, including those libuv lacks', () => {
    expect(errnoOf('ENOENT')).toBe(2)
    expect(errnoOf('ENOTCONN')).toBe(107)
    expect(errnoOf('ESHUTDOWN')).toBe(108)
    expect(errnoOf('EREMOTEIO')).toBe(121)
    expect(errnoName(-108)).toBe('ESHUTDOWN')
    expect(errnoName(121)).toBe('EREMOTEIO')
    expect(errnoName(-9999)).toBe('E9999')
  })

  it('LpError has a positive errno and its code', () => {
    const e = new LpError('ESHUTDOWN', 'import is deactivated')
    expect(e).toBeInstanceOf(Error)
    expect(e.errno).toBe(108)
    expect(e.code).toBe('ESHUTDOWN')
    expect(e.message).toBe('import is deactivated')
    expect(new LpError('EBUSY').message).toBe('EBUSY')
    expect(isLpError(e)).toBe(true)
    expect(isLpError(e, 'ESHUTDOWN')).toBe(true)
    expect(isLpError(e, 'EIO')).toBe(false)
    expect(isLpError(new Error('x'))).toBe(false)
  })

  it('toStatus maps anything thrown to a negative errno', () => {
    expect(toStatus(new LpError('ENOENT'))).toBe(-2)
    expect(toStatus(new LpError('ESHUTDOWN'))).toBe(-108)
    expect(toStatus(new LpError('EREMOTEIO'))).toBe(-121)
    // Node's own errors (fs, net) keep their meaning.
    expect(toStatus(Object.assign(new Error('x'), { code: 'ENOSPC' }))).toBe(-28)
    expect(toStatus(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))).toBe(-111)
    // What has no POSIX meaning is EIO.
    expect(toStatus(Object.assign(new Error('x'), { code: 'ERR_INVALID_ARG_TYPE' }))).toBe(-5)
    expect(toStatus(new Error('plain'))).toBe(-5)
    expect(toStatus(null)).toBe(-5)
    expect(toStatus(undefined)).toBe(-5)
    expect(toStatus('text')).toBe(-5)
  })

  it('fromStatus is the inverse of toStatus', () => {
    for (const code of ['ENOENT', 'EIO', 'EBUSY', 'ENOTCONN', 'ESHUTDOWN', 'EREMOTEIO', 'ENOTEMPTY', 'ECANCELED'] as const) {
      const back = LpError.fromStatus(toStatus(new LpError(code)), 'why')
      expect(back.code).toBe(code)
      expect(back.errno).toBe(errnoOf(code))
      expect(back.message).toBe('why')
    }
    expect(LpError.fromStatus(108).code).toBe('ESHUTDOWN')
    // An errno we do not know is still an error: EIO.
    const unknown = LpError.fromStatus(-9999, 'odd')
    expect(unknown.code).toBe('EIO')
    expect(unknown.errno).toBe(5)
  })
})

describe('wire codec', () => {
  /** A frame received in one piece, its bulk joined. */
  const decodeFrame = (buf: Buffer) => {
    const d = decodeFrameChunks([buf])
    return { json: d.json, bulk: Buffer.concat(d.bulk) }
  }

  it('round-trips a frame with and without bulk', () => {
    const json = { a: { fid: 7, name: 'héllo ✓' }, r: [1, 2] }
    const bulk = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i & 0xff))
    const parts = encodeFrame(json, bulk)
    const d = decodeFrame(Buffer.concat(parts))
    expect(d.json).toEqual(json)
    expect(Buffer.compare(d.bulk, bulk)).toBe(0)

    const plain = decodeFrame(Buffer.concat(encodeFrame({ x: 1 })))
    expect(plain.json).toEqual({ x: 1 })
    expect(plain.bulk.length).toBe(0)
    expect(decodeFrame(Buffer.concat(encodeFrame(undefined))).json).toEqual({})
  })

  it('decodes a frame from the chunks it arrived in, whatever their boundaries, without joining the bulk', () => {
    const json = { a: { fid: 7, name: 'chunks' } }
    const bulk = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7) & 0xff))
    const whole = Buffer.concat(encodeFrame(json, bulk))
    // Cuts inside the length word, inside the JSON, at its end, and through the bulk.
    for (const cuts of [[2], [9], [4 + JSON.stringify(json).length], [1, 3, 30, 1000, 4000]]) {
      const chunks: Buffer[] = []
      let at = 0
      for (const c of [...cuts, whole.length]) {
        chunks.push(whole.subarray(at, c))
        at = c
      }
      const d = decodeFrameChunks(chunks)
      expect(d.json).toEqual(json)
      expect(Buffer.compare(Buffer.concat(d.bulk), bulk)).toBe(0)
      // The bulk pieces are views of the chunks, not copies.
      for (const p of d.bulk) expect(chunks.some((c) => c.buffer === p.buffer)).toBe(true)
    }
    expect(() => decodeFrameChunks([Buffer.from([0, 0]), Buffer.from([0, 9]), Buffer.from('{}')])).toThrow(FrameError)
  })

  it('sends a bulk view as its own bytes only', () => {
    const big = Buffer.from('xxxxPAYLOADyyyy')
    const view = new Uint8Array(big.buffer, big.byteOffset + 4, 7)
    const parts = encodeFrame({}, view)
    expect(decodeFrame(Buffer.concat(parts)).bulk.toString()).toBe('PAYLOAD')
  })

  it.each([
    ['empty', Buffer.alloc(0)],
    ['short', Buffer.from([0, 0, 1])],
    ['length past the end', Buffer.concat([Buffer.from([0, 0, 0, 10]), Buffer.from('{}')])],
    ['huge length', Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.from('{}')])],
    ['not JSON', Buffer.concat([Buffer.from([0, 0, 0, 3]), Buffer.from('{x}')])],
    ['truncated JSON', Buffer.concat([Buffer.from([0, 0, 0, 2]), Buffer.from('{"a":1}')])],
  ])('rejects a malformed frame (%s) with FrameError', (_what, buf) => {
    expect(() => decodeFrame(buf)).toThrow(FrameError)
  })

  const base: ReqHeader = {
    target: 'spfs-OST0001',
    op: 'ost_write',
    client: '3f0c1a2b-0000-4000-8000-000000000001',
    handle: '0123456789abcdef',
    connCnt: 3,
    xid: 12345,
    lastXid: 12340,
    flags: ['replay', 'resend'],
    transno: 2 ** 40,
  }

  it('round-trips request headers', () => {
    expect(decodeReqHeader(encodeReqHeader(base))).toEqual(base)
    const minimal: ReqHeader = { target: 'MGS', op: 'connect', client: 'c1', connCnt: 0, xid: 1, lastXid: 0, flags: [] }
    const enc = encodeReqHeader(minimal)
    expect(enc[H.handle]).toBeUndefined()
    expect(enc[H.flags]).toBeUndefined()
    expect(enc[H.transno]).toBeUndefined()
    expect(decodeReqHeader(enc)).toEqual({ ...minimal, handle: undefined, transno: undefined })
    // Node gives repeated headers as arrays: the first one counts.
    expect(decodeReqHeader({ ...enc, [H.xid]: ['5', '6'] }).xid).toBe(5)
  })

  const enc = encodeReqHeader(base)
  const without = (name: string) => {
    const h: Record<string, string> = { ...enc }
    delete h[name]
    return h
  }
  it.each([
    ['no target', without(H.target), /x-lp-target/],
    ['no op', without(H.op), /x-lp-op/],
    ['no client', without(H.client), /x-lp-client/],
    ['a client with a slash', { ...enc, [H.client]: 'a/b' }, /x-lp-client/],
    ['a client too long', { ...enc, [H.client]: 'c'.repeat(129) }, /x-lp-client/],
    ['no conn_cnt', without(H.connCnt), /x-lp-conn-cnt/],
    ['no xid', without(H.xid), /x-lp-xid/],
    ['no last_xid', without(H.lastXid), /x-lp-last-xid/],
    ['a negative xid', { ...enc, [H.xid]: '-1' }, /not an unsigned integer/],
    ['a fractional xid', { ...enc, [H.xid]: '1.5' }, /not an unsigned integer/],
    ['a hex xid', { ...enc, [H.xid]: '0x10' }, /not an unsigned integer/],
    ['an empty xid', { ...enc, [H.xid]: '' }, /not an unsigned integer/],
    ['an unsafe integer', { ...enc, [H.xid]: '9999999999999999' }, /out of range/],
    ['too many digits', { ...enc, [H.xid]: '12345678901234567' }, /not an unsigned integer/],
    ['a bad transno', { ...enc, [H.transno]: 'x' }, /x-lp-transno/],
    ['an unknown flag', { ...enc, [H.flags]: 'replay,bogus' }, /unknown request flag 'bogus'/],
    ['an empty flag', { ...enc, [H.flags]: 'replay,' }, /unknown request flag/],
    ['a short handle', { ...enc, [H.handle]: '0123' }, /x-lp-handle/],
    ['an upper-case handle', { ...enc, [H.handle]: '0123456789ABCDEF' }, /x-lp-handle/],
  ])('rejects a request header with %s', (_what, headers, why) => {
    expect(() => decodeReqHeader(headers)).toThrow(FrameError)
    expect(() => decodeReqHeader(headers)).toThrow(why)
  })

  it('round-trips reply headers, with an error message in any characters', () => {
    const r = { status: -17, transno: 99, lastCommitted: 98, flags: ['recovering' as const], error: "'a b' exists: ✗ 100%" }
    expect(decodeReplyHeader(encodeReplyHeader(r))).toEqual(r)
    const ok = { status: 0, transno: 0, lastCommitted: 5, flags: [] }
    expect(decodeReplyHeader(encodeReplyHeader(ok))).toEqual({ ...ok, error: undefined })
    // A message quoting a request's lone surrogate: replaced, not a thrown URIError (a reset connection).
    expect(decodeReplyHeader(encodeReplyHeader({ ...r, error: "no filesystem '\ud800x'" })).error).toBe("no filesystem '\ufffdx'")
  })

  it.each([
    ['no status', {}],
    ['an empty status', { [H.status]: '' }],
    ['a blank status', { [H.status]: ' ' }],
    ['a non-numeric status', { [H.status]: 'ok' }],
    ['a fractional status', { [H.status]: '-2.5' }],
    ['a hex status', { [H.status]: '0x10' }],
    ['an exponent status', { [H.status]: '1e3' }],
  ])('rejects a reply header with %s', (_what, headers) => {
    expect(() => decodeReplyHeader(headers)).toThrow(FrameError)
  })

  it('rejects a reply header whose last_committed is not a number', () => {
    expect(() => decodeReplyHeader({ [H.status]: '0', [H.lastCommitted]: '-1' })).toThrow(FrameError)
  })
})

describe('ost_write niobufs', () => {
  const parse = (a: object) => OPS.ost_write.args.safeParse({ fid: 1, stripe: 0, offset: 0, ...a }).success
  it('takes fragments in ascending order, adjacent or apart, the first at the offset', () => {
    expect(parse({ niobufs: [{ offset: 0, length: 4096 }] })).toBe(true)
    expect(parse({ niobufs: [{ offset: 0, length: 4096 }, { offset: 4096, length: 1 }, { offset: 1 << 20, length: 4096 }] })).toBe(true)
  })
  it('refuses overlapping or unordered fragments, a first one elsewhere, an append with fragments, too many', () => {
    expect(parse({ niobufs: [{ offset: 0, length: 4096 }, { offset: 4095, length: 10 }] })).toBe(false)
    expect(parse({ niobufs: [{ offset: 0, length: 10 }, { offset: 8192, length: 10 }, { offset: 4096, length: 10 }] })).toBe(false)
    expect(parse({ offset: 10, niobufs: [{ offset: 0, length: 4096 }] })).toBe(false)
    expect(parse({ append: true, niobufs: [{ offset: 0, length: 4096 }] })).toBe(false)
    expect(parse({ niobufs: [] })).toBe(false)
    expect(parse({ niobufs: [{ offset: 0, length: 1 }, null] })).toBe(false)
    expect(parse({ niobufs: [{ offset: 0, length: 0 }] })).toBe(false)
    expect(parse({ niobufs: Array.from({ length: MAX_NIOBUFS + 1 }, (_, i) => ({ offset: i * 8192, length: 4096 })) })).toBe(false)
    expect(parse({ niobufs: Array.from({ length: MAX_NIOBUFS }, (_, i) => ({ offset: i * 8192, length: 4096 })) })).toBe(true)
  })
})

describe('times', () => {
  it("are refused past a JS Date's range, before they reach an OST's utimes", () => {
    const setattr = (mtime: number) => OPS.ost_setattr.args.safeParse({ fid: 1, stripe: 0, mtime }).success
    const touch = (mtime: number) => OPS.mdt_setattr.args.safeParse({ fid: 1, mtime }).success
    for (const ok of [0, -1, Date.now(), MAX_TIME_MS, -MAX_TIME_MS]) expect([setattr(ok), touch(ok)]).toEqual([true, true])
    for (const bad of [1e22, MAX_TIME_MS + 1, -MAX_TIME_MS - 1, Infinity, NaN]) expect([setattr(bad), touch(bad)]).toEqual([false, false])
  })
})

describe('names and symlink targets (issue 20)', () => {
  const name = (n: string) => OPS.mdt_lookup.args.safeParse({ parent: 1, name: n }).success
  const target = (t: string) => OPS.mdt_create.args.safeParse({ parent: 1, name: 'l', type: 'lnk', mode: 0o777, uid: 0, gid: 0, time: 1, target: t }).success
  it('counts a name in bytes of UTF-8, as NAME_MAX does', () => {
    expect([name('a'.repeat(255)), name('a'.repeat(256))]).toEqual([true, false])
    // é is 2 bytes, € 3, an emoji 4 (two UTF-16 units).
    expect([name('é'.repeat(127)), name('é'.repeat(128))]).toEqual([true, false])
    expect([name('€'.repeat(85)), name('€'.repeat(85) + 'a')]).toEqual([true, false])
    expect([name('😀'.repeat(63) + 'abc'), name('😀'.repeat(64))]).toEqual([true, false])
    expect(nameError('é'.repeat(128))).toBe('ENAMETOOLONG')
  })
  it('refuses lone surrogates (no UTF-8 for them), and what no name may be', () => {
    for (const n of ['\uD800', 'a\uDC00b', '😀'.slice(0, 1), '', '.', '..', 'a/b', 'a\0b']) {
      expect(name(n)).toBe(false)
      expect(nameError(n)).toBe('EINVAL')
    }
    expect(name('😀')).toBe(true)
  })
  it('counts a symlink target in bytes too, up to 4095', () => {
    expect([target('x'.repeat(MAX_SYMLINK)), target('x'.repeat(MAX_SYMLINK + 1))]).toEqual([true, false])
    expect([target('é'.repeat(2047)), target('é'.repeat(2048))]).toEqual([true, false])
    expect(targetError('é'.repeat(2048))).toBe('ENAMETOOLONG')
    expect([target('\uDFFF'), target('a\0')]).toEqual([false, false])
  })
  it('takes FIFOs, devices and sockets, with a 32-bit device number', () => {
    const create = (type: string, rdev?: number) => OPS.mdt_create.args.safeParse({ parent: 1, name: 'n', type, mode: 0o644, uid: 0, gid: 0, time: 1, rdev }).success
    expect(['fifo', 'chr', 'blk', 'sock'].map((t) => create(t))).toEqual([true, true, true, true])
    expect([create('chr', 0xffffffff), create('chr', 2 ** 32), create('blk', -1), create('door')]).toEqual([true, false, false, false])
  })
})

import { describe, expect, it } from 'vitest'
import { dropProgram } from '../../src/cluster/partition.js'

/**
 * The classic BPF programs `cluster fail --from/--loss` load on an interface, run here on
 * hand-made Ethernet frames by a small interpreter of the instructions they use.
 */
function run(program: string, frame: Buffer, random: () => number): number {
  const [count, ...insns] = program.split(',')
  const code = insns.map((i) => i.split(' ').map(Number) as [number, number, number, number])
  expect(code.length).toBe(Number(count))
  let a = 0
  for (let pc = 0; pc < code.length; pc++) {
    const [op, jt, jf, k] = code[pc]!
    if (op === 0x28) a = frame.readUInt16BE(k)
    else if (op === 0x20) a = k === 2 ** 32 - 4096 + 56 ? random() : frame.readUInt32BE(k)
    else if (op === 0x15) pc += a === k ? jt : jf
    else if (op === 0x35) pc += a >= k ? jt : jf
    else if (op === 0x06) return k
    else throw new Error(`unexpected opcode ${op}`)
  }
  throw new Error('fell off the end of the program')
}

function frame(type: number, src = '10.77.5.100', dst = '10.77.5.11'): Buffer {
  const f = Buffer.alloc(64)
  f.writeUInt16BE(type, 12)
  src.split('.').forEach((o, i) => f.writeUInt8(Number(o), 26 + i))
  dst.split('.').forEach((o, i) => f.writeUInt8(Number(o), 30 + i))
  return f
}

const DROP = 2
const PASS = 0
const never = () => 0

describe('network fault filters', () => {
  it('drops IPv4 to (or from) one address only, never ARP', () => {
    const toOss1 = dropProgram(1, { offset: 30, addr: '10.77.5.11' })
    expect(run(toOss1, frame(0x0800), never)).toBe(DROP)
    expect(run(toOss1, frame(0x0800, '10.77.5.100', '10.77.5.12'), never)).toBe(PASS)
    expect(run(toOss1, frame(0x0806), never)).toBe(PASS)
    const fromOss1 = dropProgram(1, { offset: 26, addr: '10.77.5.11' })
    expect(run(fromOss1, frame(0x0800, '10.77.5.11', '10.77.5.100'), never)).toBe(DROP)
    expect(run(fromOss1, frame(0x0800), never)).toBe(PASS)
  })

  it('drops the given share of IPv4 packets at random', () => {
    const p = dropProgram(0.2)
    let seed = 12345
    const lcg = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0)
    let dropped = 0
    for (let i = 0; i < 10_000; i++) if (run(p, frame(0x0800), lcg) === DROP) dropped++
    expect(dropped / 10_000).toBeGreaterThan(0.18)
    expect(dropped / 10_000).toBeLessThan(0.22)
    expect(run(p, frame(0x0806), () => 0)).toBe(PASS)
  })
})

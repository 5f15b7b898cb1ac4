import { describe, it, expect } from 'vitest'
import { randomText } from '../../src/common/random.js'

describe('randomText', () => {
  it('gives n random bytes in the encoding asked, never the same twice, across pool refills', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 2000; i++) {
      const h = randomText(8, 'hex')
      expect(h).toMatch(/^[0-9a-f]{16}$/)
      const b = randomText(16, 'base64url')
      expect(b).toMatch(/^[A-Za-z0-9_-]{22}$/)
      seen.add(h).add(b)
    }
    expect(seen.size).toBe(4000)
    expect(randomText(5000, 'hex')).toHaveLength(10000)
  })
})

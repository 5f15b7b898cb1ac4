import { describe, expect, it } from 'vitest'
import { DEFAULT_OPTIONS, parseOptions } from '../../src/client/options.js'

describe('mount options: dev and nodev', () => {
  it('lets device nodes be opened by default, as mount(8) does (libfuse alone would mount nodev)', () => {
    expect(DEFAULT_OPTIONS.dev).toBe(true)
    expect(parseOptions(['timeout=5']).dev).toBe(true)
  })
  it('takes nodev and dev, the last one said winning, among other options', () => {
    expect(parseOptions(['nodev,timeout=5'])).toMatchObject({ dev: false, timeout: 5 })
    expect(parseOptions(['nodev', 'dev']).dev).toBe(true)
    expect(parseOptions(['dev,nodev']).dev).toBe(false)
    expect(() => parseOptions(['nodev=1'])).toThrow(/takes no value/)
  })
})

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

describe("mount options from fstab: mount(8)'s and systemd's", () => {
  it("accepts what is mount(8)'s or systemd's business and keeps none of it", () => {
    const o = parseOptions(['defaults,rw,_netdev,auto,noauto,nofail,user,x-systemd.automount,x-systemd.mount-timeout=30,comment=x,timeout=7'])
    expect(o).toMatchObject({ timeout: 7, flags: [] })
  })
  it("hands the kernel's generic flags on, once each, in order", () => {
    expect(parseOptions(['noatime,nosuid', 'ro,noatime']).flags).toEqual(['nosuid', 'ro', 'noatime'])
    expect(() => parseOptions(['noatime=1'])).toThrow(/unknown mount option 'noatime'/)
    expect(() => parseOptions(['_net'])).toThrow(/unknown mount option '_net'/)
  })
})

import { describe, expect, it } from 'vitest'
import { mountSource, parseMountSource } from '../../src/client/source.js'

describe('mount source mgsnode[:mgsnode]:/fsname', () => {
  it("splits at the last ':/', as mount.lustre does, and round-trips", () => {
    expect(parseMountSource('10.0.0.1@tcp:10.0.0.2@tcp:/spfs')).toEqual({ mgsnode: '10.0.0.1@tcp:10.0.0.2@tcp', fsname: 'spfs' })
    expect(parseMountSource('a@tcp,a2@tcp1:b@tcp:/fs_1')).toEqual({ mgsnode: 'a@tcp,a2@tcp1:b@tcp', fsname: 'fs_1' })
    expect(mountSource('10.0.0.1@tcp', 'spfs')).toBe('10.0.0.1@tcp:/spfs')
  })
  it('refuses a source without a filesystem, with a bad name, or with bad NIDs', () => {
    expect(() => parseMountSource('10.0.0.1@tcp')).toThrow(/expected mgsnode\[:mgsnode\]:\/fsname/)
    expect(() => parseMountSource(':/spfs')).toThrow(/expected/)
    expect(() => parseMountSource('10.0.0.1@tcp:/toolongname')).toThrow(/filesystem name 'toolongname'/)
    expect(() => parseMountSource('10.0.0.1@tcp::/spfs')).toThrow(/invalid source/)
  })
})

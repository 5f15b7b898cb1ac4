/**
 * Following the MGS (src/mgc/follow.ts) and lctl's parameter globbing (src/ctl/glob.ts),
 * against fakes: an MGC whose watch and config the test drives, imports that record what
 * they are told.
 */
import { EventEmitter } from 'node:events'
import { describe, expect, it } from 'vitest'
import { globMatch, paramPath } from '../../src/common/glob.js'
import { followMgs } from '../../src/mgc/follow.js'
import type { Mgc } from '../../src/mgc/mgc.js'
import type { FsConfig, IrEvent } from '../../src/protocol/ops.js'
import type { Import } from '../../src/ptlrpc/import.js'
import { captureLogger } from '../helpers/log.js'

class FakeImport {
  calls: string[] = []
  constructor(
    readonly target: string,
    public state: string,
    public instance: number,
    public deactive = false,
  ) {}
  isClosed() {
    return false
  }
  /** As Import.recoverTo decides (its own tests cover the decision): only a newer instance concerns it. */
  recoverTo(nid: string, instance: number) {
    this.calls.push(`recover ${nid} ${instance}`)
    return !this.deactive && instance > this.instance
  }
  activate() {
    this.deactive = false
    this.calls.push('activate')
  }
  deactivate() {
    this.deactive = true
    this.calls.push('deactivate')
  }
}

const config = (active: Record<string, boolean>, seq = 1): FsConfig => ({
  fsname: 'spfs',
  port: 988,
  seq,
  targets: Object.entries(active).map(([name, a], index) => ({ name, kind: 'ost', index, nids: ['a@tcp'], mode: 'failover', active: a, instance: 1 })),
})

function world(o: { ir?: boolean; imports: FakeImport[]; active: Record<string, boolean> }) {
  let onEvents: (e: IrEvent[]) => void = () => undefined
  const mgc = {
    cfg: config(o.active),
    import: new EventEmitter(),
    watch: (_since: number, cb: (e: IrEvent[]) => void) => void (onEvents = cb),
    config: async () => mgc.cfg,
  }
  followMgs(mgc as unknown as Mgc, mgc.cfg, {
    ir: o.ir ?? true,
    log: captureLogger().log,
    importOf: (name) => o.imports.find((i) => i.target === name) as unknown as Import | undefined,
  })
  const event = async (target: string, instance: number, nid = 'b@tcp') => {
    onEvents([{ seq: 2, target, nid, instance }])
    await new Promise((r) => setImmediate(r))
  }
  return { mgc, event }
}

describe('imperative recovery', () => {
  // Changed with issue 15: a FULL import is no longer pinged out of its old connection; the
  // import itself goes to DISCONN and reconnects (Import.recoverTo, tested in import.test.ts).
  it("hands each announcement to its target's import, which reconnects to the announced NID and instance", async () => {
    const full = new FakeImport('spfs-OST0001', 'FULL', 1)
    const disconn = new FakeImport('spfs-OST0002', 'DISCONN', 1)
    const w = world({ imports: [full, disconn], active: { 'spfs-OST0001': true, 'spfs-OST0002': true } })
    await w.event('spfs-OST0001', 2)
    await w.event('spfs-OST0002', 3, 'c@tcp')
    await w.event('spfs-OST0003', 2)
    expect(full.calls).toEqual(['recover b@tcp 2'])
    expect(disconn.calls).toEqual(['recover c@tcp 3'])
  })

  it('with noir, announcements are not acted on', async () => {
    const noir = new FakeImport('spfs-OST0001', 'DISCONN', 1)
    await world({ ir: false, imports: [noir], active: { 'spfs-OST0001': true } }).event('spfs-OST0001', 2)
    expect(noir.calls).toEqual([])
  })
})

describe('permanent active flags', () => {
  it('applies a change of the MGS flag once, and does not undo a local deactivate on an unrelated change', async () => {
    const ost1 = new FakeImport('spfs-OST0001', 'FULL', 1)
    const ost2 = new FakeImport('spfs-OST0002', 'FULL', 1)
    const w = world({ ir: false, imports: [ost1, ost2], active: { 'spfs-OST0001': true, 'spfs-OST0002': true } })
    ost1.deactivate()
    w.mgc.cfg = config({ 'spfs-OST0001': true, 'spfs-OST0002': false }, 2)
    await w.event('spfs-OST0002', 1)
    await w.event('spfs-OST0002', 1)
    expect(ost2.calls).toEqual(['deactivate'])
    expect(ost1.calls).toEqual(['deactivate'])
    // The MGS said nothing while it was unreachable: its configuration is read again on reconnect.
    w.mgc.cfg = config({ 'spfs-OST0001': true, 'spfs-OST0002': true }, 3)
    w.mgc.import.emit('state', 'FULL')
    await new Promise((r) => setImmediate(r))
    expect(ost2.calls).toEqual(['deactivate', 'activate'])
  })
})

describe('lctl globbing', () => {
  it('splits names at dots except inside NIDs, and globs within one component', () => {
    expect(paramPath('mgc.MGC127.0.1.1@tcp.import')).toEqual(['mgc', 'MGC127.0.1.1@tcp', 'import'])
    expect(paramPath('osc/spfs-OST0001-osc-1a2b/state')).toEqual(['osc', 'spfs-OST0001-osc-1a2b', 'state'])
    const p = ['osc', 'spfs-OST0002-osc-1a2b', 'active']
    expect(['osc.*.active', 'osc.spfs-OST0002*.active', 'osc.*OST000[2]*.active', 'osc.*[!1]-osc-*.active', 'osc.spfs-OST000?-osc-1a2b.active'].map((g) => globMatch(g, p))).toEqual([
      true, true, true, true, true,
    ])
    expect(['osc.*', '*.active', 'osc.*OST0001*.active', 'osc.*.act', 'osc.spfs-OST0002.active'].map((g) => globMatch(g, p))).toEqual([false, false, false, false, false])
    expect(globMatch('mgc.*.import', ['mgc', 'MGC127.0.1.1@tcp', 'import'])).toBe(true)
  })
})

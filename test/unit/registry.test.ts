import { describe, expect, it } from 'vitest'
import { NUMBER_PARAMS, ParamError, TEXT_PARAMS, defaultOf, nameIn, param, paramsIn, parseParam, type Scope } from '../../src/common/registry.js'
import { describeBounds, quantity } from '../../src/common/quantity.js'
import { parseParams } from '../../src/server/target/config.js'
import { DEFAULT_OPTIONS, parseOptions } from '../../src/client/options.js'
import { intParser, paramParser, portParser, secondsParser, stripeCountParser } from '../../src/cli/parse.js'
import { InvalidArgumentError } from 'commander'
import { serverTunables } from '../../src/server/tunables.js'

describe('the parameter registry', () => {
  it.each(NUMBER_PARAMS.map((d) => [d.name, d] as const))('%s: its default lies within its bounds and parses back', (_n, d) => {
    const v = defaultOf(d)
    const b = d.bounds
    expect(v).toBeLessThanOrEqual(b.max)
    expect(b.above ? v > b.min : v >= b.min).toBe(true)
    if (b.integer) expect(Number.isInteger(v)).toBe(true)
    for (const s of d.scopes) expect(parseParam(d, s, String(v))).toBe(v)
  })

  it('declares each name once per scope, with help', () => {
    for (const scope of ['mount', 'client', 'target'] as Scope[]) {
      const names = paramsIn(scope).map((d) => nameIn(d, scope))
      expect(new Set(names).size).toBe(names.length)
    }
    for (const d of [...NUMBER_PARAMS, ...TEXT_PARAMS]) expect(d.help.length).toBeGreaterThan(0)
  })

  it('refuses values out of bounds, or not numbers, in one line naming the parameter and its range', () => {
    const rpcs = param('max_rpcs_in_flight')
    for (const bad of ['0', '257', '1.5', 'x', '', ' 8', '8 ', '1e2', '-1'])
      expect(() => parseParam(rpcs, 'client', bad)).toThrow(new ParamError(`max_rpcs_in_flight: '${bad}' is not an integer from 1 to 256`))
    const timeout = param('timeout')
    expect(() => parseParam(timeout, 'target', '0.5')).toThrow(new ParamError("sys.timeout: '0.5' is not a number of seconds from 1 to 3600"))
    expect(() => parseParam(param('mmp_interval'), 'target', '0')).toThrow(new ParamError("mmp_interval: '0' is not a positive number of seconds up to 3600"))
    expect(parseParam(param('mmp_interval'), 'target', '0.02')).toBe(0.02)
  })

  it('phrases bounds as the CLI and set_param always have', () => {
    expect(describeBounds({ min: 1, max: 65535, integer: true })).toBe('an integer from 1 to 65535')
    expect(describeBounds({ min: 0, max: Infinity, above: true, integer: false, unit: 'seconds' })).toBe('a positive number of seconds')
    expect(describeBounds({ min: 0, max: Infinity, integer: false, unit: 'seconds' })).toBe('a number of seconds')
    expect(quantity({ min: -1, max: 3, integer: true }).safeParse('-1').data).toBe(-1)
  })

  it('derives the recovery window from obd_timeout when it is not given', () => {
    expect(defaultOf(param('recovery_time_soft'), 10)).toBe(15)
    expect(defaultOf(param('recovery_time_hard'), 10)).toBe(90)
  })
})

describe('target --param through the registry', () => {
  it('keeps the values as given and applies them, defaults for the rest', () => {
    const params = parseParams(['sys.timeout=4', 'mmp_interval=0.1', 'failover.mode=failout'])
    expect(params).toEqual({ 'sys.timeout': '4', mmp_interval: '0.1', 'failover.mode': 'failout' })
    const t = serverTunables({ params } as never)
    expect(t).toMatchObject({ obdTimeoutMs: 4000, mmpIntervalMs: 100, commitIntervalMs: 5000, recoverySoftMs: 6000, recoveryHardMs: 36000 })
  })

  it.each([
    ['sys.timeout=0', "--param sys.timeout: '0' is not a number of seconds from 1 to 3600"],
    ['commit_interval=-1', "--param commit_interval: '-1' is not a positive number of seconds up to 3600"],
    ['journal_checkpoint_mb=0', "--param journal_checkpoint_mb: '0' is not a positive number of MiB up to 1048576"],
    ['failover.mode=sometimes', "--param failover.mode: 'sometimes' must be 'failover' or 'failout'"],
    ['tls=maybe', "--param tls: 'maybe' must be 'required'"],
  ])('refuses %s naming it', (p, msg) => {
    expect(() => parseParams([p])).toThrow(msg)
  })

  it('refuses a parameter that is not a target\'s, listing those that are', () => {
    expect(() => parseParams(['max_dirty_mb=4'])).toThrow(/unknown parameter 'max_dirty_mb' \(known: sys\.timeout, commit_interval, .*tls\)/)
  })
})

describe('mount options through the registry', () => {
  const numeric = NUMBER_PARAMS.filter((d) => d.scopes.includes('mount'))

  it.each(numeric.map((d) => [d.name, d] as const))('%s: takes its default back, refuses past its maximum with EINVAL naming it', (name, d) => {
    const o = parseOptions([`${name}=${defaultOf(d)}`])
    expect(Object.values(o)).toContain(defaultOf(d))
    const bad = `${name}=${d.bounds.max + 1}`
    expect(() => parseOptions([bad])).toThrow(expect.objectContaining({ code: 'EINVAL', message: `mount option ${name}: '${d.bounds.max + 1}' is not ${describeBounds(d.bounds)}` }))
    expect(() => parseOptions([name])).toThrow(new RegExp(`^mount option ${name}: '' is not `))
  })

  it('takes defaults from the registry and values as before', () => {
    expect(DEFAULT_OPTIONS).toMatchObject({ timeout: 100, actimeo: 1, maxUnstableMb: 256, maxDirtyMb: 64, maxPagesPerRpc: 1024, maxRpcsInFlight: 8, maxReadAheadPerFileMb: 32 })
    expect(parseOptions(['timeout=5,actimeo=0,max_dirty_mb=1,max_rpcs_in_flight=2,max_unstable_mb=0.5'])).toMatchObject({ timeout: 5, actimeo: 0, maxDirtyMb: 1, maxRpcsInFlight: 2, maxUnstableMb: 0.5 })
    expect(() => parseOptions(['timeout=0'])).toThrow("mount option timeout: '0' is not a number of seconds from 1 to 3600")
  })

  it('does not take an object property for an option', () => {
    expect(() => parseOptions(['constructor=1'])).toThrow(/unknown mount option 'constructor'/)
    expect(() => parseOptions(['toString'])).toThrow(/unknown mount option 'toString'/)
  })
})

describe("the CLI's numeric options through the shared argParsers", () => {
  it('parse within bounds, and refuse otherwise with the bounds as commander shows them', () => {
    expect(portParser('988')).toBe(988)
    expect(() => portParser('0')).toThrow(new InvalidArgumentError('an integer from 1 to 65535'))
    expect(intParser(-1, 10)('-1')).toBe(-1)
    expect(secondsParser(true)('0')).toBe(0)
    expect(() => secondsParser()('0')).toThrow(new InvalidArgumentError('a positive number of seconds'))
    expect(() => stripeCountParser('0')).toThrow(/-1 \(every OST\) or a count from 1/)
  })

  it("cluster up's tunables take the registry's bounds of the target params they set", () => {
    expect(paramParser('timeout')('20')).toBe(20)
    expect(() => paramParser('timeout')('0.5')).toThrow(new InvalidArgumentError('a number of seconds from 1 to 3600'))
    expect(paramParser('mmp_interval')('0.1')).toBe(0.1)
    expect(() => paramParser('recovery_time_soft')('0')).toThrow(new InvalidArgumentError('a positive number of seconds up to 36000'))
  })
})

/**
 * set_param on a mount reads the parameter registry: every client parameter takes its default
 * and refuses a value past its bounds with EINVAL, naming itself and its range; the value set
 * is the value get_param reads back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NUMBER_PARAMS, defaultOf } from '../../src/common/registry.js'
import { describeBounds } from '../../src/common/quantity.js'
import { getParams, setParams } from '../../src/ctl/params.js'
import { Tier, type TierClient } from '../helpers/tier.js'

const NET = '127.0.133'
const PORT = 34000

let t: Tier | undefined
let c: TierClient
beforeAll(async () => {
  t = await Tier.up({ net: NET, port: PORT, timeout: 4 })
  c = await t.client('params')
}, 60_000)
afterAll(async () => {
  await t?.down()
}, 60_000)

const client = NUMBER_PARAMS.filter((d) => d.scopes.includes('client'))

describe('set_param through the registry', () => {
  it.each(client.map((d) => [d.name, d] as const))('%s: refuses past its bounds naming itself, takes its default back', async (name, d) => {
    const pattern = name === 'timeout' ? name : `*.*.${name}`
    const over = d.bounds.max + 1
    await expect(setParams(c.fs, [`${pattern}=${over}`])).rejects.toMatchObject({ code: 'EINVAL', message: `${name}: '${over}' is not ${describeBounds(d.bounds)}` })
    const set = await setParams(c.fs, [`${pattern}=${defaultOf(d)}`])
    expect(set.length).toBeGreaterThan(0)
    for (const v of [...set, ...getParams(c.fs, [pattern])]) expect(v.value).toBe(defaultOf(d))
  })
})

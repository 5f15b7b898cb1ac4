import { z } from 'zod'
import { LpError } from '../protocol/errno.js'
import { globMatch } from './glob.js'

/**
 * A parameter table as lctl names its entries (`osc.<dev>.import`, `obdfilter.<target>.stats`,
 * `timeout`): what get_param and set_param read, on a mount and on a server node alike.
 */
export interface Param {
  path: string[]
  get(): unknown
  set?(value: string): void | Promise<void>
}

export interface ParamValue {
  name: string
  value: unknown
}

/** get_param's patterns and set_param's settings, as a control socket accepts them. */
export const paramListSchema = z.array(z.string().min(1).max(4096)).min(1).max(1024)

export function matching(table: Param[], pattern: string, verb: string): Param[] {
  const found = table.filter((p) => globMatch(pattern, p.path))
  if (!found.length) throw new LpError('ENOENT', `${verb}: no parameter matches '${pattern}'`)
  return found
}

export function getParamValues(table: Param[], patterns: string[]): ParamValue[] {
  return patterns.flatMap((pat) => matching(table, pat, 'get_param').map((p) => ({ name: p.path.join('.'), value: p.get() })))
}

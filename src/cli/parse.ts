import { InvalidArgumentError } from 'commander'
import { type Bounds, describeBounds, within } from '../common/quantity.js'
import { param } from '../common/registry.js'

/**
 * commander argParsers for options whose values are checked as they are parsed: a bad value
 * is a usage error (one line, exit 2) before any action runs. One zod schema
 * (common/quantity.ts) checks every number, as it does the mount options and set_param.
 */

/** A number within `b`; the error says the bounds. */
export function numberParser(b: Bounds): (v: string) => number {
  return (v) => {
    const n = within(b, v)
    if (n === undefined) throw new InvalidArgumentError(describeBounds(b))
    return n
  }
}

export function intParser(min: number, max: number): (v: string) => number {
  return numberParser({ min, max, integer: true })
}

export const portParser = intParser(1, 65535)

/** Seconds, fractions allowed; zero only when `zero`. */
export function secondsParser(zero = false): (v: string) => number {
  return numberParser({ min: 0, max: Infinity, above: !zero, integer: false, unit: 'seconds' })
}

/** A registered parameter's value (`--timeout` for sys.timeout, ...), within the registry's bounds. */
export function paramParser(name: string): (v: string) => number {
  return numberParser(param(name).bounds)
}

/** A stripe count as lfs takes it: -1 for every OST, else at least 1. */
export function stripeCountParser(v: string): number {
  const n = within({ min: -1, max: 0xffff, integer: true }, v)
  if (n === undefined || n === 0) throw new InvalidArgumentError('-1 (every OST) or a count from 1')
  return n
}

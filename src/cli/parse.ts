import { InvalidArgumentError } from 'commander'

/**
 * commander argParsers for options whose values are checked as they are parsed: a bad value
 * is a usage error (one line, exit 2) before any action runs.
 */

/** `v` as an integer from min to max (negative ones written with '-'), or undefined. */
export function intIn(v: string, min: number, max: number): number | undefined {
  if (!/^-?\d+$/.test(v) || Number(v) < min || Number(v) > max) return undefined
  return Number(v)
}

export function intParser(min: number, max: number): (v: string) => number {
  return (v) => {
    const n = intIn(v, min, max)
    if (n === undefined) throw new InvalidArgumentError(`an integer from ${min} to ${max}`)
    return n
  }
}

export const portParser = intParser(1, 65535)

/** A stripe count as lfs takes it: -1 for every OST, else at least 1. */
export function stripeCountParser(v: string): number {
  const n = intIn(v, -1, 0xffff)
  if (n === undefined || n === 0) throw new InvalidArgumentError('-1 (every OST) or a count from 1')
  return n
}

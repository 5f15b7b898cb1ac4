import { UsageError } from './errors.js'

/** Sizes as lfs takes them: 1048576, 1M, 64k, 4G. */
export function parseSize(s: string, what: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(s)
  if (!m) throw new UsageError(`invalid ${what} '${s}': a number, optionally with k, M or G`)
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g']
  return Number(m[1]) * mult
}

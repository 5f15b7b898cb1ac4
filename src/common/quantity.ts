import { z } from 'zod'

/**
 * Bounds of a number given as text (a mount option, a set_param value, a target param, a CLI
 * option): one zod schema checks them all, and one phrase says them in errors.
 */
export interface Bounds {
  min: number
  max: number
  /** Whole numbers only (negative ones written with '-'); else decimals like 0.2 (tests scale seconds down). */
  integer: boolean
  /** `min` itself is refused: a positive number. */
  above?: boolean
  /** What the number counts ('seconds', 'MiB'), for the error phrase. */
  unit?: string
}

/** "an integer from 1 to 256", "a positive number of seconds", ... */
export function describeBounds(b: Bounds): string {
  const what = b.integer ? 'an integer' : `a${b.above && b.min === 0 ? ' positive' : ''} number${b.unit ? ` of ${b.unit}` : ''}`
  const positive = b.above && b.min === 0
  if (b.max === Infinity) return positive || (!b.integer && b.min <= 0) ? what : `${what} from ${b.min}`
  return positive ? `${what} up to ${b.max}` : `${what} from ${b.min} to ${b.max}`
}

const INTEGER = /^-?\d+$/
const DECIMAL = /^\d+(\.\d+)?$/

/** The schema of a number written as text within `b`; its one issue is describeBounds's phrase. */
export function quantity(b: Bounds): z.ZodType<number, string> {
  return z.string().transform((v, ctx) => {
    const n = Number(v)
    const ok = (b.integer ? INTEGER : DECIMAL).test(v) && (b.above ? n > b.min : n >= b.min) && n <= b.max
    if (ok) return n
    ctx.addIssue({ code: 'custom', message: describeBounds(b) })
    return z.NEVER
  })
}

/** `v` within `b`, or undefined. */
export function within(b: Bounds, v: string): number | undefined {
  const r = quantity(b).safeParse(v)
  return r.success ? r.data : undefined
}

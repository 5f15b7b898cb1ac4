import type { z } from 'zod'

/** Keys of T the schema's output lacks. */
type Missing<T, O> = Exclude<keyof T, keyof O>

/**
 * A schema of what is written to disk and read back, checked at compile time to give back all
 * of T: zod strips a key it does not know, so a field of T forgotten in the schema would be
 * lost at the next load, and a narrower enum would refuse to load what was written.
 */
export function exactly<T>() {
  return <S extends z.ZodType<T>>(
    schema: S & ([T] extends [z.output<S>] ? ([Missing<T, z.output<S>>] extends [never] ? unknown : { missing: Missing<T, z.output<S>> }) : { narrower: T }),
  ): S => schema
}

/**
 * The orders in which statahead expects a process to look names up: the numbered order of
 * mdtest and job scripts (`f9` then `f10`), and the order a listing of the directory gave
 * (`ls -l`, `du`, `find`: readdir, then each name in turn).
 */
export interface NameSequence {
  /** Whether `name` comes right after `prev`. */
  follows(prev: string, name: string): boolean
  /** Up to `count` names after `name`. */
  after(name: string, count: number): string[]
}

/** Longer numbers are not worth the precision trouble: they are not followed. */
const MAX_DIGITS = 15

/** The name after `name` in its numbered sequence (`f9` -> `f10`, `x007` -> `x008`), if it is numbered. */
export function successor(name: string): string | undefined {
  const m = /^(.*?)(\d+)$/.exec(name)
  if (!m || m[2]!.length > MAX_DIGITS) return undefined
  return m[1]! + String(Number(m[2]) + 1).padStart(m[2]!.length, '0')
}

export const NUMBERED: NameSequence = {
  follows: (prev, name) => successor(prev) === name,
  after(name, count) {
    const out: string[] = []
    for (let n = successor(name); n !== undefined && out.length < count; n = successor(n)) out.push(n)
    return out
  },
}

/** A directory's names in the order its listing gave them, page after page; indexed only once a lookup asks, since most listings are never followed. */
export class ListingOrder implements NameSequence {
  private index: Map<string, number> | undefined
  private readonly names: string[] = []

  append(names: readonly string[]): void {
    for (const n of names) {
      this.index?.set(n, this.names.length)
      this.names.push(n)
    }
  }

  get length(): number {
    return this.names.length
  }

  private at(name: string): number | undefined {
    this.index ??= new Map(this.names.map((n, i) => [n, i]))
    return this.index.get(name)
  }

  follows(prev: string, name: string): boolean {
    const i = this.at(prev)
    return i !== undefined && this.names[i + 1] === name
  }

  after(name: string, count: number): string[] {
    const i = this.at(name)
    return i === undefined ? [] : this.names.slice(i + 1, i + 1 + count)
  }
}

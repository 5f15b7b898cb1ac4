/**
 * Seeded pseudo-random numbers (mulberry32): every process derives the same sequence from a
 * seed, so the verifier can recompute which pages a random writer touched without being told.
 */
export function prng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
}

/** The page indices (of `pages`) a random writer seeded with `seed` visits, in order. */
export function randomPages(seed: number, pages: number): () => number {
  // A different stream from the data pattern's, which uses the same seed.
  const next = prng(seed ^ 0x5bd1e995)
  return () => next() % pages
}

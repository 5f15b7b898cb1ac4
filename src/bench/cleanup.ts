/**
 * Everything the harness starts (the cluster, peer mounts and their servers, temporary
 * directories) registers how to undo it; undone in reverse order at the end, on failure,
 * or on SIGINT/SIGTERM, so no mount or process is left behind.
 */
export class Cleanup {
  private steps: Array<{ what: string; fn: () => Promise<void> }> = []

  /** Registers a step; the function returned runs it now (and only once). */
  push(what: string, fn: () => Promise<void>): () => Promise<void> {
    const step = { what, fn }
    this.steps.push(step)
    return async () => {
      const i = this.steps.indexOf(step)
      if (i < 0) return
      this.steps.splice(i, 1)
      await fn()
    }
  }

  /** Runs what is left, last registered first; a failing step is reported and the others still run. */
  async run(say: (line: string) => void): Promise<void> {
    while (this.steps.length) {
      const { what, fn } = this.steps.pop()!
      await fn().catch((e: unknown) => say(`cleanup of ${what} failed: ${(e as Error).message}`))
    }
  }
}

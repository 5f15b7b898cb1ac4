/**
 * A bench mount's remounts once it is closed (the run's end, or an interrupt): a remount under
 * way ends before close() returns, and none starts after, so none races the teardown.
 */
export class Remounts {
  private closed = false
  private current: Promise<unknown> = Promise.resolve()

  async run(name: string, fn: () => Promise<void>): Promise<void> {
    if (this.closed) throw new Error(`${name}: closed, not mounted again`)
    const p = fn()
    this.current = p
    await p
  }

  async close(): Promise<void> {
    this.closed = true
    await this.current.catch(() => undefined)
  }
}

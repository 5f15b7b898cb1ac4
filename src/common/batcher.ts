/**
 * Items to send per key (an OST, say), one batch in flight per key: what is added while a
 * batch is out goes in the next one, so a burst costs a few RPCs, and a lone item goes at
 * once. Each item's promise settles with the batch that carried it; a failed batch fails what
 * is still queued for its key too, since the sender gives up only when told to stop.
 */
interface Waiting<T> {
  item: T
  resolve: () => void
  reject: (e: unknown) => void
}

export class KeyedBatcher<K, T> {
  private readonly queued = new Map<K, Waiting<T>[]>()
  private readonly sending = new Set<K>()

  constructor(
    private readonly max: number,
    private readonly send: (key: K, items: T[]) => Promise<void>,
  ) {}

  add(key: K, item: T): Promise<void> {
    return new Promise((resolve, reject) => {
      let q = this.queued.get(key)
      if (!q) this.queued.set(key, (q = []))
      q.push({ item, resolve, reject })
      void this.drain(key, q)
    })
  }

  private async drain(key: K, q: Waiting<T>[]): Promise<void> {
    if (this.sending.has(key)) return
    this.sending.add(key)
    try {
      while (q.length) {
        const batch = q.splice(0, this.max)
        try {
          await this.send(key, batch.map((b) => b.item))
          for (const b of batch) b.resolve()
        } catch (e) {
          for (const b of batch.concat(q.splice(0))) b.reject(e)
        }
      }
    } finally {
      this.sending.delete(key)
    }
  }
}

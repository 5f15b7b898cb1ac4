/**
 * The bytes this mount holds read ahead of its readers, and read with their opens: Lustre's
 * llite max_read_ahead_mb, one budget for every open file. Without it each sequential reader
 * could hold max_read_ahead_per_file_mb in the daemon, and a process that opens many files
 * and reads a little of each would make it hold that many times over.
 */
export class ReadAheadBudget {
  private held = 0
  private refusals = 0

  constructor(private limit: number) {}

  /** Reserve `bytes`; false (counted) when that would pass the limit: read directly then. */
  take(bytes: number): boolean {
    if (this.held + bytes > this.limit) {
      this.refusals += 1
      return false
    }
    this.held += bytes
    return true
  }

  give(bytes: number): void {
    this.held -= bytes
  }

  get maxBytes(): number {
    return this.limit
  }

  /** A lower limit refuses what would pass it; what is held already goes as it is read or dropped. */
  set maxBytes(bytes: number) {
    this.limit = bytes
  }

  get heldBytes(): number {
    return this.held
  }

  /** Chunks not read ahead, and small files not kept with their open, for want of budget (Lustre's "hit max r-a issue"). */
  get refused(): number {
    return this.refusals
  }
}

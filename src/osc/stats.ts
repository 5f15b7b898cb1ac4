import { Histogram } from '../common/stats.js'

/**
 * osc.*.rpc_stats: for reads and writes, how many pages each RPC carried and how many RPCs
 * were already in flight when it was sent (Lustre's obd_histograms), as the OSC sends them.
 */
export type Dir = 'read' | 'write'

const PAGE = 4096
/** Lustre's OBD_HIST_MAX: the last bucket takes everything above. */
const BUCKETS = 32

export class OscRpcStats {
  readonly pagesPerRpc: Record<Dir, Histogram> = { read: pagesHistogram(), write: pagesHistogram() }
  readonly rpcsInFlight: Record<Dir, Histogram> = { read: inFlightHistogram(), write: inFlightHistogram() }
  private readonly inflight: Record<Dir, number> = { read: 0, write: 0 }

  /** An RPC of `bytes` leaves; call the answer once it is done (answered or failed). */
  begin(dir: Dir, bytes: number): () => void {
    this.pagesPerRpc[dir].tallyLog2(Math.ceil(bytes / PAGE))
    this.rpcsInFlight[dir].tally(this.inflight[dir])
    this.inflight[dir] += 1
    let ended = false
    return () => {
      if (!ended) this.inflight[dir] -= 1
      ended = true
    }
  }

  inFlight(dir: Dir): number {
    return this.inflight[dir]
  }

  view(now: number, pendingWritePages: number): Record<string, unknown> {
    const both = (h: Record<Dir, Histogram>) => ({ read: h.read.view(), write: h.write.view() })
    return {
      snapshot_time: now,
      read_RPCs_in_flight: this.inflight.read,
      write_RPCs_in_flight: this.inflight.write,
      pending_write_pages: pendingWritePages,
      // No read queue: reads are sent as they are asked.
      pending_read_pages: 0,
      pages_per_rpc: both(this.pagesPerRpc),
      rpcs_in_flight: both(this.rpcsInFlight),
    }
  }
}

function pagesHistogram(): Histogram {
  return new Histogram(BUCKETS, (i) => String(2 ** i))
}

function inFlightHistogram(): Histogram {
  return new Histogram(BUCKETS, (i) => String(i))
}

import type { Logger } from '../common/log.js'
import type { FsConfig, IrEvent, OpArgs } from '../protocol/ops.js'
import type { PtlrpcClient } from '../ptlrpc/client.js'
import { Import } from '../ptlrpc/import.js'

/** Longest long-poll of the MGS; always under a request's deadline, so a quiet MGS is not taken for a dead one. */
const WATCH_MAX_MS = 30_000
/** After a failed poll, retry soon (an eviction by a restarted MGS fails it once), backing off while it keeps failing. */
const WATCH_RETRY_MS = [100, 5000] as const

/**
 * The management client: reads the filesystem configuration from the MGS, registers
 * targets, records permanent parameters, and follows the MGS's imperative-recovery notices.
 */
export class Mgc {
  readonly import: Import
  private watching = false

  constructor(
    private readonly client: PtlrpcClient,
    nids: string[],
    private readonly log: Logger,
    name = `MGC${nids[0]}`,
  ) {
    this.import = new Import({ client, target: 'MGS', name, nids, log })
  }

  start(): void {
    this.import.connect()
  }

  async config(fsname?: string): Promise<FsConfig> {
    return (await this.import.request<FsConfig>('mgs_config', fsname ? { fsname } : {})).body
  }

  async register(a: OpArgs<'mgs_target_reg'>): Promise<void> {
    await this.import.request('mgs_target_reg', a)
  }

  async setParam(target: string, key: 'active', value: string): Promise<void> {
    await this.import.request('mgs_set_param', { target, key, value })
  }

  /** Long-poll the MGS for target restarts and configuration changes after configuration `since`. */
  watch(since: number, onEvents: (events: IrEvent[]) => void): void {
    if (this.watching) return
    this.watching = true
    let seq = since
    let retry: number = WATCH_RETRY_MS[0]
    void (async () => {
      while (this.watching && !this.closed()) {
        try {
          const waitMs = Math.min(WATCH_MAX_MS, this.client.tunables.obdTimeoutMs / 2)
          const r = await this.import.request<{ seq: number; events: IrEvent[] }>('mgs_watch', { since: seq, wait_ms: waitMs })
          seq = Math.max(seq, r.body.seq)
          retry = WATCH_RETRY_MS[0]
          if (r.body.events.length) onEvents(r.body.events)
        } catch (e) {
          if (this.closed()) break
          this.log.debug({ err: (e as Error).message }, 'mgs_watch failed, retrying')
          await this.client.clock.sleep(retry)
          retry = Math.min(WATCH_RETRY_MS[1], retry * 2)
        }
      }
    })()
  }

  private closed(): boolean {
    return this.import.state === 'CLOSED'
  }

  async close(): Promise<void> {
    this.watching = false
    await this.import.close()
  }
}

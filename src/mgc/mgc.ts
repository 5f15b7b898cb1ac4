import type { Logger } from '../common/log.js'
import type { FsConfig, IrEvent, OpArgs } from '../protocol/ops.js'
import type { PtlrpcClient } from '../ptlrpc/client.js'
import { Import } from '../ptlrpc/import.js'

/**
 * The management client: reads the filesystem configuration from the MGS, registers
 * targets, records permanent parameters, and follows the MGS's imperative-recovery notices.
 */
export class Mgc {
  readonly import: Import
  private watching = false
  private seq = 0

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
    const r = await this.import.request<FsConfig>('mgs_config', fsname ? { fsname } : {})
    this.seq = Math.max(this.seq, r.body.seq)
    return r.body
  }

  async register(a: OpArgs<'mgs_target_reg'>): Promise<void> {
    await this.import.request('mgs_target_reg', a)
  }

  async setParam(target: string, key: 'active', value: string): Promise<void> {
    await this.import.request('mgs_set_param', { target, key, value })
  }

  /** Long-poll the MGS for target restarts and configuration changes. */
  watch(onEvent: (e: IrEvent) => void, waitMs: number): void {
    if (this.watching) return
    this.watching = true
    void (async () => {
      while (this.watching && !this.closed()) {
        try {
          const r = await this.import.request<{ seq: number; events: IrEvent[] }>('mgs_watch', { since: this.seq, wait_ms: waitMs })
          for (const e of r.body.events) onEvent(e)
          this.seq = Math.max(this.seq, r.body.seq)
        } catch (e) {
          if (this.closed()) break
          this.log.debug({ err: (e as Error).message }, 'mgs_watch failed, retrying')
          await this.client.clock.sleep(1000)
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

/**
 * The target's client table (Lustre's last_rcvd): who is connected with which export handle,
 * their last transno and xid, and the saved reply of every modifying request until the
 * client's last_xid passes it (multi-slot reply data). Changes are journaled with the data,
 * so a resent request whose original executed gets its original reply back after a restart.
 */
export interface ClientRecord {
  uuid: string
  handle: string
  lastTransno: number
  lastXid: number
}

export interface SavedReply {
  xid: number
  transno: number
  body: unknown
  /** A failed request's answer (negative errno, message): it has no transno, nothing changed. */
  status?: number
  error?: string
}

export type Failure = Required<Pick<SavedReply, 'status'>> & Pick<SavedReply, 'error'>

/** Client table changes, journaled in order with the transactions (a failure rides the next batch). */
export type ClientMeta =
  | { k: 'client_add'; v: ClientRecord }
  | { k: 'client_del'; uuid: string }
  | ({ k: 'client_fail'; uuid: string; xid: number } & Failure)

export interface LastRcvdImage {
  clients: ClientRecord[]
  replies: Array<{ uuid: string } & SavedReply>
}

export class LastRcvd {
  readonly clients = new Map<string, ClientRecord>()
  private readonly replies = new Map<string, Map<number, SavedReply>>()

  static load(img: LastRcvdImage | undefined): LastRcvd {
    const t = new LastRcvd()
    for (const c of img?.clients ?? []) t.clients.set(c.uuid, { ...c })
    for (const { uuid, ...r } of img?.replies ?? []) t.save(uuid, r)
    return t
  }

  image(): LastRcvdImage {
    const replies: LastRcvdImage['replies'] = []
    for (const [uuid, m] of this.replies) for (const r of m.values()) replies.push({ uuid, ...r })
    return { clients: [...this.clients.values()].map((c) => ({ ...c })), replies }
  }

  applyMeta(m: ClientMeta): void {
    if (m.k === 'client_add') this.clients.set(m.v.uuid, { ...m.v })
    else if (m.k === 'client_fail') this.record(m.uuid, m.xid, 0, {}, { status: m.status, error: m.error })
    else {
      this.clients.delete(m.uuid)
      this.replies.delete(m.uuid)
    }
  }

  /** Record the outcome of a modifying request, or its failure (also used when replaying the journal). */
  record(uuid: string, xid: number, transno: number, body: unknown, failure?: Failure): void {
    const c = this.clients.get(uuid)
    if (c) {
      c.lastTransno = Math.max(c.lastTransno, transno)
      c.lastXid = Math.max(c.lastXid, xid)
    }
    this.save(uuid, { xid, transno, body, ...failure })
  }

  private save(uuid: string, r: SavedReply): void {
    let m = this.replies.get(uuid)
    if (!m) this.replies.set(uuid, (m = new Map()))
    m.set(r.xid, r)
  }

  /** How many replies of a client are saved (not acknowledged by its last_xid yet). */
  savedCount(uuid: string): number {
    return this.replies.get(uuid)?.size ?? 0
  }

  find(uuid: string, xid: number): SavedReply | undefined {
    return this.replies.get(uuid)?.get(xid)
  }

  /** Drop saved replies the client has acknowledged (every xid <= lastXid got its reply). */
  prune(uuid: string, lastXid: number): void {
    const m = this.replies.get(uuid)
    if (!m) return
    for (const xid of m.keys()) if (xid <= lastXid) m.delete(xid)
  }
}

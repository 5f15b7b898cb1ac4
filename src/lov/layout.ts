import type { Layout } from '../protocol/ops.js'

/**
 * RAID-0 stripe math: a file of stripe size S over C objects puts its k-th S-sized chunk
 * on object k mod C, at object offset floor(k / C) * S.
 */
export interface StripeExtent {
  /** Stripe index within the layout (the object is (fid, stripe)). */
  stripe: number
  ost: number
  objOff: number
  fileOff: number
  len: number
}

/** Split the file range [off, off+len) into per-object pieces, in file order. */
export function mapExtent(layout: Layout, off: number, len: number): StripeExtent[] {
  const S = layout.stripe_size
  const C = layout.osts.length
  const out: StripeExtent[] = []
  let pos = off
  const end = off + len
  while (pos < end) {
    const chunk = Math.floor(pos / S)
    const within = pos - chunk * S
    const n = Math.min(S - within, end - pos)
    const stripe = chunk % C
    out.push({ stripe, ost: layout.osts[stripe]!, objOff: Math.floor(chunk / C) * S + within, fileOff: pos, len: n })
    pos += n
  }
  return out
}

/** How many bytes object `stripe` holds of a file `size` bytes long (what truncate sets it to). */
export function objectSizeFor(layout: Layout, stripe: number, size: number): number {
  const S = layout.stripe_size
  const C = layout.osts.length
  const rows = Math.floor(size / (S * C))
  const rest = size - rows * S * C
  return rows * S + Math.min(S, Math.max(0, rest - stripe * S))
}

/** The file size implied by its objects' sizes (Lustre's glimpse); null: no such object. */
export function fileSizeFrom(layout: Layout, objSizes: Array<number | null>): number {
  const S = layout.stripe_size
  const C = layout.osts.length
  let size = 0
  objSizes.forEach((s, stripe) => {
    if (!s) return
    const last = s - 1
    const row = Math.floor(last / S)
    size = Math.max(size, row * S * C + stripe * S + (last - row * S) + 1)
  })
  return size
}

/** The OSTs a layout touches, each once, with the stripes it holds there. */
export function stripesByOst(layout: Layout): Map<number, number[]> {
  const m = new Map<number, number[]>()
  layout.osts.forEach((ost, stripe) => {
    const l = m.get(ost)
    if (l) l.push(stripe)
    else m.set(ost, [stripe])
  })
  return m
}

import { promises as fsp } from 'node:fs'

/**
 * Where a failover's time went, from the logs: detection (the kill until the client saw
 * the connection lost), takeover (the kill until the partner served the target) and client
 * recovery (the partner serving until the client's import was FULL again).
 */
export interface RecoverySplit {
  target: string
  detectionMs: number | null
  takeoverMs: number
  recoveryMs: number | null
}

interface LogLine {
  time: number
  msg?: string
}

export async function recoverySplit(clientLog: string, target: string, killedAt: number, servedAt: number): Promise<RecoverySplit> {
  const lines = (await fsp.readFile(clientLog, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as LogLine)
    .filter((l) => l.time >= killedAt && l.msg?.startsWith(`${target}: `))
  const lost = lines.find((l) => l.msg!.includes('was lost'))
  const restored = lines.find((l) => l.msg!.includes('Connection restored') && l.time >= servedAt)
  return {
    target,
    detectionMs: lost ? lost.time - killedAt : null,
    takeoverMs: servedAt - killedAt,
    recoveryMs: restored ? restored.time - servedAt : null,
  }
}

import { AsyncLocalStorage } from 'node:async_hooks'
import { readFileSync } from 'node:fs'
import { LRUCache } from 'lru-cache'
import type { Cred } from '../protocol/ops.js'

/**
 * The identity of the process a FUSE request comes from, for the length of the work it
 * causes (Lustre's current_cred()): the binding runs each request as its caller, and the mdc
 * packs that identity into every MDT request, which the MDT checks permissions with. Work with
 * no caller (a library user, a binding that does not tell) sends none: the MDT takes it as root's.
 */
const current = new AsyncLocalStorage<Cred>()

export function asCaller<T>(cred: Cred, fn: () => T): T {
  return current.run(cred, fn)
}

export function currentCred(): Cred | undefined {
  return current.getStore()
}

/** The supplementary groups of a process, from the `Groups:` line of /proc/PID/status ([] once it is gone). */
export function procGroups(pid: number): number[] {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return []
  }
  const line = /^Groups:[ \t]*(.*)$/m.exec(text)?.[1] ?? ''
  return line
    .split(/\s+/)
    .filter((g) => /^\d{1,10}$/.test(g))
    .map(Number)
    .filter((g) => g <= 0xffffffff)
}

/**
 * Groups by pid, kept briefly: a process's many requests in a row read /proc once, and a
 * newgrp/setgroups is seen within `ttlMs`. Pids are reused, hence short.
 */
export class GroupCache {
  /** Past `max` pids, the one least recently asked for goes, in constant time (a busy node runs thousands). */
  private readonly byPid: LRUCache<number, { groups: number[]; at: number }>

  constructor(
    private readonly now: () => number,
    private readonly ttlMs = 1000,
    max = 4096,
    private readonly read: (pid: number) => number[] = procGroups,
  ) {
    this.byPid = new LRUCache({ max })
  }

  groups(pid: number): number[] {
    const t = this.now()
    const hit = this.byPid.get(pid)
    if (hit && t - hit.at < this.ttlMs) return hit.groups
    const groups = pid > 0 ? this.read(pid) : []
    this.byPid.set(pid, { groups, at: t })
    return groups
  }
}

import { spawnSync } from 'node:child_process'
import { afterAll } from 'vitest'

/**
 * A /24 for a netns cluster no other run uses now (its third octet names the namespaces,
 * `lpnet-<octet>-*`), and their removal after the test file whatever happened to it (the
 * cluster's own `down` removes them too; this is for a crash or a failed test).
 */
const mine = new Set<string>()

function namespaces(): string[] {
  return spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean)
}

function remove(octet: string): void {
  for (const ns of namespaces()) if (ns.startsWith(`lpnet-${octet}-`)) spawnSync('ip', ['netns', 'del', ns])
}

export function freshNet(): string {
  const taken = new Set(namespaces().map((ns) => /^lpnet-(\d+)-/.exec(ns)?.[1]).filter(Boolean))
  for (;;) {
    // 10.77.100-249: the lower octets are left to hand-run clusters (default 10.77.1).
    const octet = String(100 + Math.floor(Math.random() * 150))
    if (taken.has(octet) || mine.has(octet)) continue
    mine.add(octet)
    return `10.77.${octet}`
  }
}

/** The netns cluster's namespaces of this file that are left. */
export function leftNamespaces(): string[] {
  return namespaces().filter((ns) => [...mine].some((o) => ns.startsWith(`lpnet-${o}-`)))
}

afterAll(() => {
  for (const o of mine) remove(o)
})
process.on('exit', () => {
  for (const o of mine) remove(o)
})

/**
 * lctl's parameter names are dotted paths (`osc.*.import`) whose components are matched as a
 * shell glob matches file names: `*`, `?` and `[...]` never cross a component. A dot between
 * two digits belongs to a NID (`mgc.MGC127.0.1.1@tcp.import`); `/` also separates.
 */
export function paramPath(name: string): string[] {
  return name.replace(/(?<!\d)\.|\.(?!\d)/g, '/').split('/')
}

function componentRe(p: string): RegExp {
  let re = ''
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!
    const close = c === '[' ? p.indexOf(']', i + 2) : -1
    if (c === '*') re += '.*'
    else if (c === '?') re += '.'
    else if (close > 0) {
      const body = p.slice(i + 1, close).replace(/\\/g, '\\\\')
      re += `[${body.startsWith('!') ? '^' + body.slice(1) : body}]`
      i = close
    } else re += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  }
  return new RegExp(`^${re}$`)
}

export function globMatch(pattern: string, path: string[]): boolean {
  const p = paramPath(pattern)
  return p.length === path.length && p.every((c, i) => componentRe(c).test(path[i]!))
}

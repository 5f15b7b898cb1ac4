import type { Command } from 'commander'

/** Client-side commands (mount, umount, setstripe, getstripe, dl, get_param, df, ...). */
export function registerClientCommands(_program: Command): void {}

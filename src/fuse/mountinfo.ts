/** What is mounted where, from /proc/self/mountinfo. */
import * as fs from 'fs';
import * as path from 'path';

export interface MountEntry {
  mountpoint: string;
  fstype: string;
  source: string;
}

function unescapeMount(s: string): string {
  return s.replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The mount at exactly this path (per /proc/self/mountinfo), or null. */
export function findMount(mountpoint: string): MountEntry | null {
  const want = path.resolve(mountpoint);
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return null;
  }
  let found: MountEntry | null = null;
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    if (dash < 0 || fields[4] === undefined) continue;
    const mp = unescapeMount(fields[4]);
    if (mp === want) found = { mountpoint: mp, fstype: fields[dash + 1] ?? '', source: unescapeMount(fields[dash + 2] ?? '') };
  }
  return found; // the last one: the mount on top
}

export function isMounted(mountpoint: string): boolean {
  return findMount(mountpoint) !== null;
}

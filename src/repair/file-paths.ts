/**
 * Paths for repair reports: the inodes a repair touched, named by a path
 * that reaches them ("/home/a/b: ...") rather than by number. Found by one
 * breadth-first walk of the directories from the root, done once per
 * repair and only when there is something to report, in paced slices (the
 * daemon serves FUSE requests between them: a directory is read a page of
 * entries at a time, by cookie, so one that changes between slices is
 * still walked right). Its cost is capped: past `maxEntries` entries read,
 * the inodes not yet found are reported by number.
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import type { Rmapfs } from '../fs/rmapfs';
import { DT_DIR } from '../dir/dir';
import { Pacer } from '../io/pacer';
import type { PacerOptions } from '../io/pacer';

const log = createDebug('rmapfs:repair');

/** Entries read per unit of work. */
const ENTRIES_PER_UNIT = 32;
/** The walk's default cap: entries read before it gives up on the inodes still unnamed. */
export const PATH_WALK_MAX_ENTRIES = 1_000_000;

export interface PathWalkOptions extends PacerOptions {
  maxEntries?: number;
  /** Filled with the file types (DT_*) of the entries naming each wanted inode that the walk read. */
  entryTypes?: Map<number, Set<number>>;
}

/**
 * A path for each of `wanted` the walk reached (the root is "/"). An inode
 * with several links gets the first found; one no directory names is absent.
 */
export async function findPaths(fsx: Rmapfs, wanted: ReadonlySet<number>, options: PathWalkOptions = {}): Promise<Map<number, string>> {
  const found = new Map<number, string>();
  if (wanted.has(fsx.rootIno)) found.set(fsx.rootIno, '/');
  if (found.size === wanted.size) return found;
  await walkPaths(fsx, options, (ino, path, ftype) => {
    if (wanted.has(ino) && !found.has(ino)) found.set(ino, path);
    if (wanted.has(ino) && options.entryTypes !== undefined) {
      const types = options.entryTypes.get(ino) ?? new Set<number>();
      options.entryTypes.set(ino, types.add(ftype));
    }
    return found.size < wanted.size;
  });
  log('paths: %d of %d inodes named', found.size, wanted.size);
  return found;
}

/**
 * Every path (up to `maxPerInode` each, in walk order) that names one of
 * `wanted`: the whole namespace is walked (within the cap on entries), as a
 * name may be anywhere. For a file with more names than its link count said.
 */
export async function findAllPaths(fsx: Rmapfs, wanted: ReadonlySet<number>, maxPerInode: number,
  options: PathWalkOptions = {}): Promise<Map<number, string[]>> {
  const found = new Map<number, string[]>();
  await walkPaths(fsx, options, (ino, path) => {
    if (!wanted.has(ino)) return true;
    let list = found.get(ino);
    if (list === undefined) found.set(ino, (list = []));
    if (list.length < maxPerInode) list.push(path);
    return true;
  });
  return found;
}

/**
 * One breadth-first walk of the directories from the root, paced, calling
 * `visit` with every entry's inode and path until it returns false (or the
 * cap on entries is reached).
 */
async function walkPaths(fsx: Rmapfs, options: PathWalkOptions, visit: (ino: number, path: string, ftype: number) => boolean): Promise<void> {
  const root = fsx.rootIno;
  const maxEntries = options.maxEntries ?? PATH_WALK_MAX_ENTRIES;
  const pacer = new Pacer(options);
  const queue: { ino: number; path: string }[] = [{ ino: root, path: '' }];
  const seen = new Set<number>([root]);
  let entries = 0;
  let more = true;
  while (queue.length > 0 && more && entries < maxEntries) {
    const dir = queue.shift()!;
    let cookie = 0;
    for (;;) {
      let page;
      try {
        page = fsx.readdirFrom(dir.ino, cookie, ENTRIES_PER_UNIT);
      } catch (e) {
        // A directory that went away, or one too damaged to read (its own repair's business): walked past.
        if (!(e instanceof RmapfsError)) throw e;
        break;
      }
      for (const d of page) {
        if (d.name === '.' || d.name === '..') continue;
        entries++;
        const path = `${dir.path}/${d.name}`;
        if (more) more = visit(d.ino, path, d.ftype);
        if (d.ftype === DT_DIR && !seen.has(d.ino)) {
          seen.add(d.ino);
          queue.push({ ino: d.ino, path });
        }
      }
      if (page.length < ENTRIES_PER_UNIT || !more) break;
      cookie = page[page.length - 1]!.next;
      if (pacer.due()) await pacer.pause();
    }
    if (pacer.due()) await pacer.pause();
  }
  log('path walk: %d entries read', entries);
}

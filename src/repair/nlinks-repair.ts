/**
 * Online repair of link counts (the method of XFS's fs/xfs/scrub/nlinks.c
 * and nlinks_repair.c, our own convention): a scan of every directory counts
 * the names each inode has, while the filesystem stays in use; then every
 * inode whose count differs is fixed, each in its own small transaction, and
 * an inode in use that no directory names goes to /lost+found (orphanage.ts).
 *
 * What a link count is here (what mkdir, rmdir, link, unlink and rename keep):
 * - a file: the entries that name it;
 * - a directory: the entries that name it (one), plus one for itself ("."),
 *   plus one per subdirectory -- counted as the entries of file type
 *   directory it holds, not as the subdirectories' ".." entries: a directory
 *   removed while open keeps its ".." (it is not destroyed until its last
 *   user goes) though its parent's count has already dropped. The root has
 *   no name, and counts 2 + its subdirectories, as mkfs made it.
 * ".." entries are never counted.
 *
 * 1. Scan: every inode in use, in number order (InodeScanCursor: inodes
 *    created or freed meanwhile are seen as they are when the cursor gets
 *    there); a directory's entries are read in hash order, a few at a time
 *    (a unit), the filesystem served between slices (Pacer). A directory
 *    entry hook keeps the counts current: a change in a directory already
 *    read is applied, one in a directory not yet read is not (it will be
 *    read as it is then); in the directory being read, a change to a name
 *    whose hash is below the reading position is applied, one above is not
 *    (a unit always ends between two hashes, so no name is on the line).
 * 2. Fix: every inode in use, in number order again, paced, the hook still
 *    on (everything is "read" now: every change is applied). Each inode is
 *    compared and fixed in its own transaction, against the counts as they
 *    are at that moment. An inode no directory names: an open file unlinked
 *    (no links, kept for its user: Rmapfs.isOrphan) is left alone; any other
 *    is adopted by /lost+found.
 * 3. Name: a file whose count went up has a name its count did not know of
 *    -- maybe an entry whose inode number was damaged, now naming it instead
 *    of a file just adopted. One paced walk of the namespace lists its names
 *    (file-paths.ts) in the report beside the adopted files' new paths: with
 *    no parent pointers nothing tells which name it was, so a person decides
 *    (as after xfs_repair, which raises the count and fills lost+found too).
 *
 * The counts are a dense array per inode chunk of the inodes that are named
 * at all (256 bytes per 64 inodes, outside the JS heap: 1M inodes ~ 4 MiB),
 * and a map of the directories that have subdirectories.
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import type { DirentUpdate } from '../alloc/alloc';
import { Directory, DOTDOT, DT_DIR, decodeDirent, nameHash } from '../dir/dir';
import { InodeScanCursor } from '../inode/iscan';
import type { Inode } from '../inode/inode';
import { FORK_BTREE } from '../inode/inode-format';
import type { Rmapfs } from '../fs/rmapfs';
import { Pacer } from '../io/pacer';
import type { FileRepairOptions, FileRepairResult } from './file-repair';
import type { CollectOptions } from './rmap-collect';
import { Orphanage, ORPHANAGE_NAME } from './orphanage';
import { findAllPaths } from './file-paths';

const log = createDebug('rmapfs:repair');

/** A file repair's options, and whether the filesystem is unmounted (bigger units: nothing waits). */
type LinkCountOptions = FileRepairOptions & Pick<CollectOptions, 'unmounted'>;

/** Directory entries read per unit of work (then to the end of that hash). */
const ENTRIES_PER_UNIT = 32;
/** The same offline (CollectOptions.unmounted): each unit is a descent from the directory's root. */
const ENTRIES_PER_UNIT_UNMOUNTED = 65536;
/** Inodes per counts array: an inode chunk. */
const PER_ARRAY = 64;

/** How many names each inode has and how many subdirectories each directory has. */
export class LinkCounts {
  /** Names per inode, an array per 64 inode numbers that any name points into. */
  private readonly names = new Map<number, Uint32Array>();
  /** Entries of file type directory, per directory that has any. */
  private readonly subdirs = new Map<number, number>();
  /** Per directory named by entries of file type directory: the directories holding them (and how many each). */
  private readonly parents = new Map<number, Map<number, number>>();

  nameCount(ino: number): number {
    return this.names.get(Math.floor(ino / PER_ARRAY))?.[ino % PER_ARRAY] ?? 0;
  }

  subdirCount(dir: number): number {
    return this.subdirs.get(dir) ?? 0;
  }

  /** An entry `dir` holds that names `ino` (of file type `ftype`), counted (+1) or uncounted (-1). */
  note(dir: number, ino: number, ftype: number, delta: 1 | -1): void {
    const key = Math.floor(ino / PER_ARRAY);
    let a = this.names.get(key);
    if (a === undefined) {
      a = new Uint32Array(PER_ARRAY);
      this.names.set(key, a);
    }
    a[ino % PER_ARRAY] = a[ino % PER_ARRAY]! + delta;
    if (ftype === DT_DIR) {
      const n = this.subdirCount(dir) + delta;
      if (n === 0) this.subdirs.delete(dir);
      else this.subdirs.set(dir, n);
      let held = this.parents.get(ino);
      if (held === undefined) this.parents.set(ino, (held = new Map()));
      const m = (held.get(dir) ?? 0) + delta;
      if (m === 0) held.delete(dir);
      else held.set(dir, m);
      if (held.size === 0) this.parents.delete(ino);
    }
  }

  /** A directory holding an entry of file type directory that names `ino` (the lowest numbered), or null. */
  parentOf(ino: number): number | null {
    const held = this.parents.get(ino);
    return held === undefined || held.size === 0 ? null : Math.min(...held.keys());
  }

  /**
   * The directories entries name that no path from `root` reaches (through
   * entries of file type directory), by number. An unreachable directory
   * with no name at all is not here: it is simply nameless.
   */
  unreachableDirectories(root: number): number[] {
    const children = new Map<number, number[]>();
    for (const [child, held] of this.parents) {
      for (const parent of held.keys()) {
        let list = children.get(parent);
        if (list === undefined) children.set(parent, (list = []));
        list.push(child);
      }
    }
    const reached = new Set<number>([root]);
    const queue = [root];
    while (queue.length > 0) {
      for (const child of children.get(queue.pop()!) ?? []) {
        if (!reached.has(child)) {
          reached.add(child);
          queue.push(child);
        }
      }
    }
    return [...this.parents.keys()].filter((d) => !reached.has(d)).sort((a, b) => a - b);
  }

  /** The link count inode `ino` should have (isRoot: the root directory, which no entry names). */
  wanted(ino: number, isDir: boolean, isRoot: boolean): number {
    if (!isDir) return this.nameCount(ino);
    return (isRoot ? 1 : this.nameCount(ino)) + 1 + this.subdirCount(ino);
  }

  /** Arrays of counts held (a figure for the heap). */
  get arrays(): number {
    return this.names.size;
  }
}

export interface LinkCountScanStats {
  inodes: number;
  directories: number;
  entries: number;
  liveUpdates: number;
  slices: number;
  scanMs: number;
}

/** The scan of every directory, kept current by the directory entry hook until close(). */
export class LinkCountScan {
  readonly counts = new LinkCounts();
  readonly stats: LinkCountScanStats = { inodes: 0, directories: 0, entries: 0, liveUpdates: 0, slices: 0, scanMs: 0 };
  /** Every directory with a lower number has been read (and is kept current by the hook). */
  private readBelow = 0;
  /** The directory being read, and the hash its next unit starts at (names hashing below it are read). */
  private reading: { dir: number; hashFrom: number } | null = null;
  /** The scan is over: every change is applied. */
  private complete = false;
  private hookError: unknown = null;
  private readonly hook = (u: DirentUpdate): void => this.onDirentUpdate(u);
  private readonly key = Buffer.alloc(6);

  constructor(private readonly fsx: Rmapfs) {}

  /** Has the entry `name` of `dir` been read (so a change to it is the hook's to apply)? */
  private isRead(dir: number, name: Buffer): boolean {
    if (this.complete || dir < this.readBelow) return true;
    const r = this.reading;
    return r !== null && r.dir === dir && nameHash(name) < r.hashFrom;
  }

  private onDirentUpdate(u: DirentUpdate): void {
    if (u.name.equals(DOTDOT) || !this.isRead(u.dir, u.name)) return;
    this.stats.liveUpdates++;
    this.counts.note(u.dir, u.ino, u.ftype, u.op === 'add' ? 1 : -1);
  }

  throwIfAborted(): void {
    if (this.hookError === null) return;
    const why = this.hookError instanceof Error ? this.hookError.message : String(this.hookError);
    throw new RmapfsError('EIO', `link count repair: the live update hook failed: ${why}; nothing was changed`);
  }

  /** Registers the hook: from now on, changes to what has been read are counted. */
  open(): void {
    this.fsx.fs.alloc.addDirentHook(this.hook, (e) => { this.hookError ??= e; });
  }

  close(): void {
    this.fsx.fs.alloc.removeDirentHook(this.hook);
  }

  /** The inode if it is a directory in use (with its tree), else null. */
  private directoryAt(ino: number): Directory | null {
    // Freed since the scan found it (an rmdir between two slices): no names left to count. Looked at
    // before `get`, which calls a free inode corruption ("free but still referenced").
    if (this.fsx.inodes.handle(ino).mode === 0) return null;
    const inode = this.fsx.inodes.get(ino);
    if (!inode.isDir) return null;
    if (inode.format !== FORK_BTREE) {
      throw new RmapfsError('EFSCORRUPTED', `directory ${ino} has no btree: repair directories before link counts`);
    }
    return new Directory(inode, this.fsx.fs.alloc, this.fsx.fs.geo);
  }

  /** One unit: the next few entries of the directory being read (to the end of a hash); true when it is done. */
  private readSome(reading: { dir: number; hashFrom: number }, perUnit: number): boolean {
    const dir = this.directoryAt(reading.dir);
    // Freed (or no longer a directory) since the last unit: the hook took its names away as they went.
    if (dir === null) return true;
    const key = this.key;
    key.writeUInt32BE(reading.hashFrom, 0);
    key.writeUInt16BE(0, 4);
    const cur = dir.tree.cursor();
    let n = 0;
    let lastHash = -1;
    for (let ok = cur.lookup(key, 0, 'ge'); ok; ok = cur.increment()) {
      const { block, offset } = cur.recordAt();
      const d = decodeDirent(block, offset);
      if (n >= perUnit && d.hash !== lastHash) {
        reading.hashFrom = d.hash;
        return false;
      }
      lastHash = d.hash;
      n++;
      if (d.name.equals(DOTDOT)) continue;
      this.stats.entries++;
      this.counts.note(reading.dir, d.ino, d.ftype, 1);
    }
    return true;
  }

  /** Reads every directory, in paced slices (the hook must be open). */
  async collect(options: LinkCountOptions): Promise<void> {
    const t0 = process.hrtime.bigint();
    const perUnit = options.unmounted === true ? ENTRIES_PER_UNIT_UNMOUNTED : ENTRIES_PER_UNIT;
    const { alloc, geo } = this.fsx.fs;
    const iscan = new InodeScanCursor(alloc, geo);
    const pacer = new Pacer(options);
    for (;;) {
      if (this.reading === null) {
        const ino = iscan.next(this.readBelow - 1);
        if (ino === null) break;
        this.stats.inodes++;
        // Every directory below ino is read: there is none in use between the last one and it.
        this.readBelow = ino;
        try {
          if (this.directoryAt(ino) !== null) {
            this.stats.directories++;
            this.reading = { dir: ino, hashFrom: 0 };
          } else {
            this.readBelow = ino + 1;
          }
        } catch (e) {
          throw unreadable(ino, e);
        }
      } else {
        const reading = this.reading;
        let done: boolean;
        try {
          done = this.readSome(reading, perUnit);
        } catch (e) {
          throw unreadable(reading.dir, e);
        }
        if (done) {
          this.reading = null;
          this.readBelow = reading.dir + 1;
        }
      }
      if (pacer.due()) await this.pauseBetweenSlices(pacer, iscan, options);
    }
    this.complete = true;
    this.stats.slices = pacer.slices;
    this.stats.scanMs = Number(process.hrtime.bigint() - t0) / 1e6;
    this.throwIfAborted();
  }

  /** Serves the filesystem between two slices; the repair stops here if it was cancelled or its hook failed. */
  async pauseBetweenSlices(pacer: Pacer, iscan: InodeScanCursor, options: FileRepairOptions): Promise<void> {
    this.throwIfAborted();
    await pacer.pause();
    iscan.forget();
    await options.betweenSlices?.();
    this.throwIfAborted();
    if (options.cancelled?.()) throw new RmapfsError('ECANCELED', 'link count repair cancelled');
  }
}

/** A directory the scan cannot read: its names cannot be counted, so no count can be trusted. */
function unreadable(ino: number, e: unknown): unknown {
  if (!(e instanceof RmapfsError) || (e.code !== 'EFSCORRUPTED' && e.code !== 'EFSBADCRC')) return e;
  return new RmapfsError(e.code, `link counts not repaired: directory ${ino} cannot be read (${e.message}); repair directories first`);
}

/** What one inode needs: nothing, a new link count, or a name in /lost+found; a file whose count went up joins `raised`. */
function fixOne(fsx: Rmapfs, counts: LinkCounts, orphanage: Orphanage, ino: number, raised: Set<FileRepairResult>): FileRepairResult | null {
  const isRoot = ino === fsx.rootIno;
  const t0 = process.hrtime.bigint();
  const pause = (): number => Number(process.hrtime.bigint() - t0) / 1e6;
  const current = (): Inode | null => {
    const inode = fsx.inodes.get(ino);
    return inode.mode === 0 ? null : inode;
  };
  const seen = current();
  if (seen === null) return null;
  if (!isRoot && counts.nameCount(ino) === 0) {
    // Unlinked while open: it has no name on purpose, and goes when its last user does.
    if (seen.nlink === 0 && fsx.isOrphan(ino)) return null;
    // Named once there: one more than the counts say now.
    const a = orphanage.adopt(ino, (isDir) => counts.wanted(ino, isDir, false) + 1);
    const changes = [`moved to /${ORPHANAGE_NAME}/${a.name}`];
    if (a.nlinkBefore !== a.nlinkAfter) changes.push(`link count ${a.nlinkBefore} -> ${a.nlinkAfter}`);
    return { type: 'nlinks', ino, path: null, changes, commitPauseMs: pause(), namelessBefore: true };
  }
  if (seen.nlink === counts.wanted(ino, seen.isDir, isRoot)) return null;
  // Its own transaction, checked again inside it: the counts are current as of now.
  const before = fsx.fs.run(() => {
    const inode = current();
    if (inode === null) return null;
    const want = counts.wanted(ino, inode.isDir, isRoot);
    if (inode.nlink === want || (inode.nlink === 0 && fsx.isOrphan(ino))) return null;
    const was = inode.nlink;
    inode.nlink = want;
    inode.touch('ctime');
    return { was, want };
  });
  if (before === null) return null;
  const result: FileRepairResult = { type: 'nlinks', ino, path: null, changes: [`link count ${before.was} -> ${before.want}`], commitPauseMs: pause() };
  if (!seen.isDir && before.want > before.was) raised.add(result);
  return result;
}

/**
 * Directories no path from the root reaches though entries name them: a
 * cycle (each named by another in it) and what hangs below it. As e2fsck's
 * pass 3 does: from each, the entries that name it are followed upwards
 * until a directory comes round again -- the cycle's entry point -- which
 * is moved into /lost+found (one rename: its entry in the cycle goes, its
 * ".." and both counts follow), so the cycle and all below it are reached
 * again. A walk that ends at a directory nothing names leaves it to the
 * adoption of nameless inodes (fixOne). The counts are current (the hook
 * applies every change once the scan is complete), so each move is seen.
 */
function reconnectCycles(fsx: Rmapfs, counts: LinkCounts, orphanage: Orphanage): FileRepairResult[] {
  const results: FileRepairResult[] = [];
  const tried = new Set<number>();
  for (;;) {
    let moved = false;
    for (const start of counts.unreachableDirectories(fsx.rootIno)) {
      const seen = new Set<number>();
      let at: number | null = start;
      while (at !== null && !seen.has(at)) {
        seen.add(at);
        at = counts.parentOf(at);
      }
      if (at === null || tried.has(at)) continue;
      tried.add(at);
      const r = reconnectOne(fsx, orphanage, counts.parentOf(at)!, at);
      if (r === null) continue;
      results.push(r);
      moved = true;
      break; // reached again: the cycle and everything below it (the next look sees it)
    }
    if (!moved) return results;
  }
}

/** Moves directory `ino`, named in the cycle by an entry of `parent`, into /lost+found; null when it is not (or no longer) so. */
function reconnectOne(fsx: Rmapfs, orphanage: Orphanage, parent: number, ino: number): FileRepairResult | null {
  const t0 = process.hrtime.bigint();
  const inode = fsx.inodes.handle(ino);
  if (inode.mode === 0 || !inode.isDir) return null; // an entry's type that lies: the directory repair's damage
  let name: Buffer | null = null;
  new Directory(fsx.inodes.get(parent), fsx.fs.alloc, fsx.fs.geo).forEach((d) => {
    if (d.ino === ino && d.ftype === DT_DIR) name = d.name;
    return name === null;
  });
  if (name === null) return null;
  const entry = (name as Buffer).toString();
  const to = orphanage.reconnect(parent, name, ino);
  return {
    type: 'nlinks', ino, path: null, namelessBefore: true, commitPauseMs: Number(process.hrtime.bigint() - t0) / 1e6,
    changes: [`moved to /${ORPHANAGE_NAME}/${to} (no path from the root reached it: a cycle of directories, named '${entry}' in directory ${parent})`],
  };
}

/** Names listed for a file whose count was raised. */
const NAMES_LISTED = 8;

/**
 * A file with more names than its count said may hold a name that pointed
 * at another file once (an entry's inode number damaged): that file has no
 * name left and was adopted. The report lists the names, so that a person
 * can find the entry that changed and the file now in /lost+found; nothing
 * tells which name it was (there are no parent pointers here), so nothing
 * is undone.
 */
async function nameRaisedFiles(fsx: Rmapfs, raised: ReadonlySet<FileRepairResult>, adopted: readonly FileRepairResult[],
  options: FileRepairOptions): Promise<void> {
  if (raised.size === 0) return;
  const byIno = new Map([...raised].map((r) => [r.ino, r]));
  const paths = await findAllPaths(fsx, new Set(byIno.keys()), NAMES_LISTED, options);
  const lostFound = adopted.flatMap((a) => a.changes.map((c) => /^moved to (\S+)/.exec(c)?.[1]).filter((to): to is string => to !== undefined));
  for (const [ino, r] of byIno) {
    const names = (paths.get(ino) ?? []).sort();
    if (names.length === 0) continue;
    r.changes.push(`named by ${names.join(', ')}${names.length === NAMES_LISTED ? ', ...' : ''}`
      + (lostFound.length > 0 ? `: if one of these names was another file's, that file is now ${lostFound.length === 1 ? lostFound[0]! : `one of ${lostFound.join(', ')}`}` : ''));
  }
}

/**
 * Repairs every inode's link count online, and links every inode in use that
 * no directory names into /lost+found. One result per inode changed. A
 * directory that cannot be read stops it before anything changes
 * (EFSCORRUPTED): without its names no count can be trusted.
 */
export async function repairLinkCounts(fsx: Rmapfs, options: LinkCountOptions = {}): Promise<FileRepairResult[]> {
  const scan = new LinkCountScan(fsx);
  const results: FileRepairResult[] = [];
  scan.open();
  try {
    await scan.collect(options);
    const t0 = process.hrtime.bigint();
    const { alloc, geo } = fsx.fs;
    const iscan = new InodeScanCursor(alloc, geo);
    const pacer = new Pacer(options);
    const orphanage = new Orphanage(fsx);
    const raised = new Set<FileRepairResult>();
    results.push(...reconnectCycles(fsx, scan.counts, orphanage));
    for (let ino = iscan.next(-1); ino !== null; ino = iscan.next(ino)) {
      const r = fixOne(fsx, scan.counts, orphanage, ino, raised);
      if (r !== null) {
        results.push(r);
        // An adoption may have made /lost+found: an inode allocated under the cursor's cached chunk.
        iscan.forget();
      }
      if (pacer.due()) await scan.pauseBetweenSlices(pacer, iscan, options);
    }
    await nameRaisedFiles(fsx, raised, results.filter((r) => r.namelessBefore === true), options);
    const s = scan.stats;
    log('link counts: %d inodes, %d directories, %d entries, %d live updates; scan %d ms in %d slices, fix %d ms; %d changed',
      s.inodes, s.directories, s.entries, s.liveUpdates, Math.round(s.scanMs), s.slices,
      Math.round(Number(process.hrtime.bigint() - t0) / 1e6), results.length);
    fsx.fs.alloc.fsHealth.markHealthy('nlinks');
    return results;
  } finally {
    scan.close();
  }
}

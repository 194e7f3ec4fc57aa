/**
 * Checks of the files themselves, cross-referenced with the AG metadata:
 * every inode the inode btrees call used is reachable from the root and has
 * as many links as directory entries; directories are sound btrees whose
 * ".." is their parent; every extent of a file's block map, and every block
 * of its btrees, is mapped to that file in the rmap; and every block the
 * rmap gives a file is one the file holds.
 */
import { RmapfsError } from '../errors';
import { InodeStore } from '../inode/inode';
import type { Inode } from '../inode/inode';
import { decodeInobt, isInodeFree, INODES_PER_CHUNK } from '../alloc/inode-btree';
import {
  DATA_FORK_OFFSET, DATA_FORK_SIZE, IFLAGS_DEFINED, isCleanFreeInode,
  FORK_BTREE, FORK_EXTENTS, FORK_LOCAL, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK,
} from '../inode/inode-format';
import { attrForkOwned, dataForkOwned, PAUSE, rmapFlagsOf } from '../file/owned';
import type { OwnedBlocks, OwnedKind } from '../file/owned';
import type { Btree } from '../btree/btree';
import { Directory, DOTDOT, DT_DIR, decodeDirent, direntIno, dirBtreeOps } from '../dir/dir';
import { bmapBtreeOps } from '../file/bmap';
import type { Dirent } from '../dir/dir';
import { SYMLINK_MAX } from '../fs/rmapfs';
import { MAX_FILE_SIZE } from '../file/file';
import { verifyBtreeSteps } from '../btree/verify';
import { decodeRmap, RMAP_ATTR_FORK, RMAP_BMBT_BLOCK, RMAP_UNWRITTEN } from '../rmap/rmap-btree';
import { AttrFork, valueBlocks } from '../attr/attr';
import { RmapFinder, RmapIndex } from '../rmap/rmap';
import type { RmapLookup } from '../rmap/rmap';
import type { MappingDigest } from '../rmap/rmap-digest';
import type { AttrEntry } from '../attr/attr';
import { posixAclProblem } from '../attr/posix-acl';
import { isInodeOwner } from '../format/owners';
import { impossibleFileExtent } from '../alloc/ag-owners';
import { BLOCK_SIZE } from '../format/superblock';
import { eachRecord, runToEnd } from './common';
import type { ProblemList, ScrubSource, ScrubSteps } from './common';
import type { StructureName } from '../format/structures';
import { InodeTable, inodeKeys } from './inode-table';

const VALID_TYPES = new Set([S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK]);

export interface InodeScrubResult {
  inodes: number;
  /** Inodes with no links kept for their users (or left by a crash). */
  orphans: number;
  directories: number;
  extents: number;
}

export interface InodeScrubOptions {
  /**
   * Whether the AG scrub found AG agno's rmap sound (consistent with its
   * free space and its own checks). A file block the rmap has nothing at is
   * then the file's block map's damage (it names space the AG has free),
   * not the rmap's: the block map is rebuilt from the rmap. Unknown (no AG
   * scrub ran): the rmap is blamed, as before the block map had a repairer.
   */
  rmapSound?: (agno: number) => boolean;
  /**
   * Whether AG agno's rmap is copied into memory in one walk of its leaves
   * (RmapIndex) for the file pass's look-ups rather than searched as a tree:
   * the same answers where the tree verified (leaf order is key order), so by
   * default where the rmap is sound; tests force either way.
   */
  rmapIndexed?: (agno: number) => boolean;
  /**
   * AGs whose rmap the caller knows to be what an offline rebuild made from
   * the forks (rmap-digest.ts): there the forks' mappings are digested into
   * the AG's digest instead of looked up in the rmap (and, when every AG is,
   * the rmap's totals per owner are not summed either). The caller compares
   * each digest with what the rebuild gathered, and runs the pass again
   * without this option when one differs.
   */
  filesDigested?: ReadonlyMap<number, MappingDigest>;
}

/**
 * The inodes of every chunk the readable inode btrees name that cannot be
 * read (their block fails its verifier): what the file pass would call the
 * cores' damage, found without it -- the file pass waits for every AG's
 * btrees to be walkable, and the rmap's rebuild reads every inode.
 */
export function unreadableInodes(fs: ScrubSource): number[] {
  const store = new InodeStore(fs.cache, fs.geo, fs.alloc);
  const out: number[] = [];
  for (const ag of fs.alloc.ags) {
    try {
      runToEnd(eachRecord(ag.ino, (b, off) => {
        const r = decodeInobt(b, off);
        for (let i = 0; i < INODES_PER_CHUNK; i++) {
          const ino = fs.geo.ino(ag.agno, r.startino + i);
          try {
            void store.handle(ino).mode; // a handle reads its block on first use
          } catch (e) {
            if (!(e instanceof RmapfsError)) throw e;
            out.push(ino);
          }
        }
      }));
    } catch (e) {
      if (!(e instanceof RmapfsError)) throw e;
      // An unreadable inode btree is the AG scrub's finding; its chunks are found again once it is rebuilt.
    }
  }
  return out;
}

export function scrubInodes(fs: ScrubSource, problems: ProblemList, options: InodeScrubOptions = {}): InodeScrubResult {
  return runToEnd(scrubInodesSteps(fs, problems, options));
}

/**
 * scrubInodes, pausing after each inode chunk, directory block, inode and
 * few hundred extents (see common.ts): over a million rmap records the files
 * take seconds to check.
 */
export function* scrubInodesSteps(fs: ScrubSource, problems: ProblemList, options: InodeScrubOptions = {}): ScrubSteps<InodeScrubResult> {
  const result: InodeScrubResult = { inodes: 0, orphans: 0, directories: 0, extents: 0 };
  const store = new InodeStore(fs.cache, fs.geo, fs.alloc);
  const geo = fs.geo;
  const bad: BadInode = (ino, msg, structure = 'inode', type) => {
    problems.add(structure, geo.inoAgno(ino), geo.inoLocation(ino).fsbno, `inode ${ino}: ${msg}`, type, ino);
  };
  const rmapSound = options.rmapSound ?? ((): boolean => false);
  const digested = options.filesDigested ?? new Map<number, MappingDigest>();
  const everyAgDigested = fs.alloc.ags.every((ag) => digested.has(ag.agno));
  // The rmap must say the inode owns these blocks (checkMapped), unless the AG's are digested (then true).
  const mappedOrDigested = (inode: Inode, o: OwnedBlocks, badFn: BadInode): boolean => {
    const d = digested.get(geo.agnoOf(o.fsbno));
    if (d === undefined) return checkMapped(fs, rmapOf, inode, o, badFn, rmapSound);
    d.add(inode.ino, geo.agbnoOf(o.fsbno), o.blockcount, o.fileoff, rmapFlagsOf(o));
    return false;
  };
  // One finder per AG for the whole pass: what it reads (a check's filesystem, a scrub's frozen view) stays as it is.
  const finders = new Map<number, RmapLookup>();
  const rmapOf = (agno: number): RmapLookup => {
    let f = finders.get(agno);
    if (f === undefined) finders.set(agno, (f = new RmapFinder(fs.alloc.ag(agno).rmap)));
    return f;
  };

  // 1. The inodes the inode btrees say are in use (by key: see inodeKeys).
  const { key, inoOf } = inodeKeys(geo);
  // Each inode in use (by key) with its mode as step 1 read it, 0 where the inode does not read: the
  // namespace walk asks for the type of every entry's inode (one look-up, not a second read), and
  // counts the entries that name each.
  const used = new InodeTable();
  for (const ag of fs.alloc.ags) {
    try {
      yield* eachRecord(ag.ino, (b, off) => {
        const r = decodeInobt(b, off);
        for (let i = 0; i < INODES_PER_CHUNK; i++) {
          const ino = geo.ino(ag.agno, r.startino + i);
          const free = isInodeFree(r, i);
          let mode = 0;
          try {
            const inode = store.handle(ino);
            const damage = store.damage(inode);
            if (damage !== null) {
              // An inode in use is reported where it is loaded (step 3); a free one only here.
              if (free) bad(ino, `(block ${inode.fsbno}): ${damage.what}`);
              else used.setUsed(key(ino), 0);
              continue;
            }
            mode = inode.mode;
          } catch (e) {
            bad(ino, e instanceof RmapfsError ? e.message : String(e));
            continue;
          }
          if (!free) used.setUsed(key(ino), mode);
          if (free && mode !== 0) bad(ino, 'is free in the inode btree but in use');
          if (free && mode === 0 && !isCleanFreeInodeAt(store.handle(ino))) bad(ino, 'is free but not cleared');
          if (!free && mode === 0) bad(ino, 'is used in the inode btree but free');
        }
      }, 1);
    } catch (e) {
      problems.add('inobt', ag.agno, -1, e instanceof Error ? e.message : String(e));
    }
  }

  // 2. Walk the tree from the root, counting links (by key).
  // The blocks of each directory step 2 found sound, as its verification kept them: the file pass's
  // walk of its blocks (step 3) does not read the tree again (what it reads stays as it is meanwhile).
  const dirBlocks = new Map<number, readonly number[]>();
  const parentOf = new Map<number, number>();
  const root = fs.superblock().rootIno;
  const queue: number[] = [root];
  parentOf.set(root, root);
  const seenDirs = new Set<number>();
  while (queue.length > 0) {
    const dirIno = queue.shift()!;
    if (seenDirs.has(dirIno)) continue;
    seenDirs.add(dirIno);
    let dir: Directory;
    try {
      dir = new Directory(store.get(dirIno), fs.alloc, geo);
    } catch (e) {
      bad(dirIno, e instanceof Error ? e.message : String(e), 'directory');
      continue;
    }
    result.directories++;
    const v = yield* verifyBtreeSteps(dir.tree, { keepPointers: true });
    for (const p of v.problems) bad(dirIno, p.message, 'directory');
    if (v.pointers !== undefined) dirBlocks.set(key(dirIno), v.pointers);
    if (!v.ok) continue;
    if (v.records !== dir.inode.nextents) bad(dirIno, `counts ${dir.inode.nextents} entries, its btree holds ${v.records}`, 'directory');
    if (dir.inode.size !== 0) bad(dirIno, `directory size ${dir.inode.size} (directories have size 0)`, 'directory');
    const dotdot = dir.lookup(DOTDOT);
    if (dotdot !== null && dotdot.ftype !== DT_DIR) bad(dirIno, `".." has file type ${dotdot.ftype}`, 'directory');
    try {
      // Said as the entry holds it (direntIno): exact above 2^53, where the number rounds.
      if (dir.parent !== parentOf.get(dirIno)) bad(dirIno, `".." is ${dotdot === null ? dir.parent : direntIno(dotdot)}, the parent is ${parentOf.get(dirIno)}`, 'directory');
    } catch (e) {
      bad(dirIno, e instanceof Error ? e.message : String(e), 'directory');
    }
    const entry = (d: Dirent): void => {
      const k = key(d.ino);
      const mode = used.modeOf(k);
      if (mode === undefined) {
        bad(dirIno, `entry '${d.name.toString()}' points to inode ${direntIno(d)}, which is not in use`, 'directory');
        return;
      }
      used.link(k);
      // An inode that does not read (or reads free) is step 3's to report.
      if (mode === 0) return;
      if (((mode >>> 12) & 0xf) !== d.ftype) {
        const child = store.get(d.ino);
        const entryType = d.ftype << 12;
        // The entry's file type is a second source for the inode's: when the forks fit the entry's
        // type and not the inode's, the inode's type is what is wrong (its core's repair restores it).
        if (forksFitType(fs, child, entryType) && !forksFitType(fs, child, child.mode & S_IFMT)) {
          bad(d.ino, `file type ${typeName(child.mode & S_IFMT)}, its directory entry '${d.name.toString()}' says ${typeName(entryType)} (and its forks fit that)`);
        } else {
          bad(dirIno, `entry '${d.name.toString()}' has file type ${d.ftype}, the inode ${(child.mode >>> 12) & 0xf}`, 'directory');
        }
      }
      if ((mode & S_IFMT) === S_IFDIR) {
        if (parentOf.has(d.ino)) bad(d.ino, 'directory has more than one parent', 'directory');
        else {
          parentOf.set(d.ino, dirIno);
          queue.push(d.ino);
        }
      }
    };
    // Directory.forEach's walk, pausing per leaf: a directory may hold a million entries.
    yield* eachRecord(dir.tree, (b, off) => {
      const d = decodeDirent(b, off);
      if (!d.name.equals(DOTDOT)) entry(d);
    });
  }

  // 2b. The directories the walk could not reach (their name lost with their parent's damage) verified
  // too, before step 3's nameless inodes (a lost big directory names thousands) fill the problem list:
  // a damaged one is the directory repair's, which the link counts' scan needs first.
  for (const k of used.keys) {
    const ino = inoOf(k);
    if (seenDirs.has(ino)) continue;
    let dir: Directory;
    try {
      const inode = store.get(ino);
      if (!inode.isDir || inode.format !== FORK_BTREE) continue;
      dir = new Directory(inode, fs.alloc, geo);
    } catch {
      continue; // step 3 reports it
    }
    const v = yield* verifyBtreeSteps(dir.tree, { keepPointers: true });
    for (const p of v.problems) bad(ino, p.message, 'directory');
    if (v.pointers !== undefined) dirBlocks.set(k, v.pointers);
  }

  // 3. Each inode in use: reachable, link count, fork, and its space against the rmap.
  const rmapIndexed = options.rmapIndexed ?? rmapSound;
  for (const ag of fs.alloc.ags) {
    if (rmapIndexed(ag.agno) && !digested.has(ag.agno)) {
      const index = yield* indexRmap(ag.rmap);
      if (index !== null) finders.set(ag.agno, index);
    }
  }
  const subdirs = new Map<number, number>();
  for (const [child, parent] of parentOf) if (child !== parent) subdirs.set(parent, (subdirs.get(parent) ?? 0) + 1);
  const heldByOwner = new Map<number, number>();
  // Inodes no entry names: one line for them all (an unreadable directory leaves thousands).
  const nameless: number[] = [];
  for (const k of used.keys) {
    const ino = inoOf(k);
    yield;
    result.inodes++;
    let inode: Inode;
    try {
      inode = store.get(ino);
    } catch (e) {
      bad(ino, e instanceof Error ? e.message : String(e));
      continue;
    }
    const type = inode.mode & S_IFMT;
    if (!VALID_TYPES.has(type)) bad(ino, `unknown file type ${type.toString(8)}`);
    // A flag bit no rmapfs defines: the core's repair clears it.
    if ((inode.flags & ~IFLAGS_DEFINED) !== 0) bad(ino, `undefined flag bits 0x${((inode.flags & ~IFLAGS_DEFINED) >>> 0).toString(16)}`);
    const reachable = ino === root || used.linksOf(k) > 0;
    // An inode with no links that nothing names is an orphan: unlinked while open, freed at the next mount.
    if (!reachable && inode.nlink === 0) result.orphans++;
    else if (!reachable) nameless.push(ino);
    const wantLinks = inode.isDir ? 2 + (subdirs.get(ino) ?? 0) : used.linksOf(k);
    if (reachable && inode.nlink !== wantLinks) bad(ino, `link count ${inode.nlink}, found ${wantLinks}`, 'inode', 'nlinks');
    let held = 0;
    // A fork tree that fails verification is not walked whole, and a block map the rmap contradicts is rebuilt
    // from the rmap: what the inode holds is then unknown.
    let treeDamaged = false;
    // The blocks the inode owns (file/owned.ts, the walk the rmap repair's scan makes too), each tree
    // verified before its blocks are read; each fork's damage is its own structure's.
    const verifyTree = function* (tree: Btree, kind: 'bmbt' | 'dir' | 'attr-btree'): Generator<void, boolean | readonly number[], void> {
      const v = yield* verifyBtreeSteps(tree, { keepPointers: true });
      if (!v.ok) treeDamaged = true;
      const structure = kind === 'attr-btree' ? 'attr' : 'bmbt';
      for (const p of v.problems) bad(ino, p.message, structure);
      if (kind === 'bmbt' && v.ok && v.records !== inode.nextents) bad(ino, `counts ${inode.nextents} extents, its block map holds ${v.records}`, 'bmbt');
      if (kind === 'attr-btree' && v.ok && v.records !== inode.attrCount) bad(ino, `counts ${inode.attrCount} attributes, its attr btree holds ${v.records}`, 'attr');
      // Sound: its blocks are the ones just verified. Else they are walked even so: each one that is
      // readable is checked against the rmap.
      return v.pointers ?? true;
    };
    // Directories were verified by the namespace walk (step 2) and step 2b: a sound one's blocks are known.
    const walk = {
      readBlocks: true,
      beforeTree: (tree: Btree, kind: 'bmbt' | 'dir' | 'attr-btree') => kind === 'dir' ? verifiedBefore(dirBlocks.get(k)) : verifyTree(tree, kind),
    };
    try {
      if (inode.isDir && inode.format !== FORK_BTREE) bad(ino, 'directory without a btree');
      if (!inode.isDir && inode.format === FORK_LOCAL) {
        if (type !== S_IFLNK) bad(ino, 'local data in a file that is not a symlink', 'inode', 'symlink');
        const n = inode.nextents;
        if (n < 1 || n > DATA_FORK_SIZE) bad(ino, `local data of ${n} bytes (1..${DATA_FORK_SIZE})`, 'inode', 'symlink');
        if (inode.size !== n) bad(ino, `size ${inode.size}, local data ${n} bytes`, 'inode', 'symlink');
      }
      const mapped = !inode.isDir && (inode.format === FORK_EXTENTS || inode.format === FORK_BTREE);
      if (mapped && type === S_IFLNK && (inode.size < 1 || inode.size > SYMLINK_MAX)) bad(ino, `symlink of ${inode.size} bytes`, 'inode', 'symlink');
      let lastEnd = 0;
      // End of the last written extent: a regular file may hold unwritten blocks past EOF (fallocate
      // KEEP_SIZE), never written ones (truncate frees them, a write past EOF moves the size).
      let writtenEnd = 0;
      // Whether the rmap disagrees with a block of the map: then blocks past the end are the map's
      // damage; when it agrees, the size is what is wrong (the core's: set from the blocks).
      let mapDoubted = false;
      const badMapping: BadInode = (...args) => {
        mapDoubted = true;
        bad(...args);
      };
      if (type === S_IFREG && inode.size > MAX_FILE_SIZE) bad(ino, `size ${inode.sizeText} is past the largest file (${MAX_FILE_SIZE})`);
      // (Past 2^63 the kernel refuses the attributes outright: every lookup of the name is EIO.)
      if (isSpecialFile(type) && inode.size !== 0) bad(ino, `${typeName(type)} of size ${inode.sizeText} (special files have size 0)`);
      for (const o of dataForkOwned(inode, fs.alloc, geo, walk)) {
        if (o === PAUSE) {
          yield;
          continue;
        }
        if (o.kind !== 'data') {
          held++;
          if (mappedOrDigested(inode, o, bad)) treeDamaged = true;
          continue;
        }
        result.extents++;
        if (o.fileoff < lastEnd) bad(ino, `extent at file block ${o.fileoff} overlaps the one before`, 'inode', 'bmap');
        lastEnd = o.fileoff + o.blockcount;
        if (!o.unwritten || type !== S_IFREG) writtenEnd = lastEnd;
        // Wrong by itself, whatever the rmap says: the block map's damage (its rmap disagreement a doubt).
        const impossible = impossibleFileExtent(geo, o.fsbno, o.blockcount);
        if (impossible !== null) {
          bad(ino, `extent ${o.fileoff}+${o.blockcount} at ${o.fsbno} ${impossible}`, 'inode', 'bmap');
          treeDamaged = true;
          mapDoubted = true;
          continue;
        }
        held += o.blockcount;
        if (mappedOrDigested(inode, o, badMapping)) treeDamaged = true;
      }
      if (mapped) {
        if (type === S_IFLNK && lastEnd * BLOCK_SIZE < inode.size) bad(ino, `symlink of ${inode.size} bytes holds only ${lastEnd} blocks`, 'inode', 'symlink');
        if (writtenEnd * BLOCK_SIZE > Math.ceil(inode.size / BLOCK_SIZE) * BLOCK_SIZE) {
          bad(ino, `blocks mapped up to file block ${writtenEnd}, past the end of file (size ${inode.size}, mode ${inode.mode.toString(8)})`,
            'inode', mapDoubted || type !== S_IFREG ? 'bmap' : 'inode');
        }
      }
    } catch (e) {
      bad(ino, e instanceof Error ? e.message : String(e));
      continue;
    }
    try {
      const ctx = { device: fs.device, alloc: fs.alloc, geo, noteDataWritten: () => undefined };
      for (const o of attrForkOwned(inode, ctx, walk)) {
        if (o === PAUSE) {
          yield;
          continue;
        }
        held += o.blockcount;
        mappedOrDigested(inode, o, bad);
      }
      // Each value's crc: a wrong length, block or value shows here. Under a frozen view the device
      // holds the values of now, not of the view's moment: a mismatch there is damage only when the
      // live filesystem still holds that record (else its blocks may have been freed and reused).
      const attrs = new AttrFork(inode, ctx);
      for (const e of attrs.btree === null ? [] : attrs.list()) {
        try {
          const aclWrong = posixAclProblem(e.name, attrs.value(e), inode.isDir);
          if (aclWrong !== null) bad(ino, aclWrong, 'attr');
        } catch (err) {
          if (valueBlocks(e.valueLen) > 0 && fs.frozen === true && !liveStillHolds(fs, ino, e)) continue;
          // The fork's damage: the block count is its repair's to set.
          treeDamaged = true;
          bad(ino, err instanceof Error ? err.message : String(err), 'attr');
        }
      }
    } catch (e) {
      bad(ino, e instanceof Error ? e.message : String(e), 'attr');
    }
    // With a damaged fork the count is that fork's repair's to set (the rmap says what it holds).
    if (inode.nblocks !== held && !treeDamaged) bad(ino, `counts ${inode.nblocks} blocks, holds ${held}`);
    if (!everyAgDigested) heldByOwner.set(ino, held);
  }
  reportNameless(nameless, bad, problems, geo);

  // 4. Every rmap record of a file owner belongs to a file in use that holds that many blocks (where every
  //    rmap is the one rebuilt from these forks, so are its totals: the caller's digests say whether they are).
  const rmapByOwner = new Map<number, number>();
  // Owners above 2^53 (damage) as the record says them: the number rounds.
  const exactOwner = new Map<number, string>();
  for (const ag of everyAgDigested ? [] : fs.alloc.ags) {
    try {
      yield* eachRecord(ag.rmap, (b, off) => {
        const r = decodeRmap(b, off);
        if (r.ownerExact !== undefined) exactOwner.set(r.owner, r.ownerExact);
        if (isInodeOwner(r.owner)) rmapByOwner.set(r.owner, (rmapByOwner.get(r.owner) ?? 0) + r.blockcount);
      });
    } catch {
      // The AG scrub reports an unreadable rmap.
    }
  }
  for (const [owner, blocks] of rmapByOwner) {
    const held = heldByOwner.get(owner);
    if (held === undefined) {
      problems.add('rmap', geo.inoAgno(owner), -1, `rmap gives ${blocks} blocks to inode ${exactOwner.get(owner) ?? owner}, which is not in use`, undefined, owner);
    }
    else if (held !== blocks) problems.add('rmap', geo.inoAgno(owner), -1, `rmap gives inode ${owner} ${blocks} blocks, it holds ${held}`, undefined, owner);
  }
  return result;
}

/**
 * Whether the live filesystem's inode ino still has attribute e's record as
 * the frozen view has it (see ScrubSource.live): then its value blocks are
 * still the ones the view read (a value's blocks are never rewritten while a
 * record points at them), and a value that failed its crc is damage.
 */
function liveStillHolds(fs: ScrubSource, ino: number, e: AttrEntry): boolean {
  const live = fs.live;
  if (live === undefined) return true;
  try {
    const inode = new InodeStore(live.cache, live.geo, live.alloc).get(ino);
    const attrs = new AttrFork(inode, { device: live.device, alloc: live.alloc, geo: live.geo, noteDataWritten: () => undefined });
    return attrs.list().some((l) => l.name.equals(e.name) && l.valueLen === e.valueLen && l.valueBlock === e.valueBlock && l.valueCrc === e.valueCrc);
  } catch {
    // The live inode or its fork does not read (freed, changed shape, damaged): the view's record is gone.
    return false;
  }
}

/** Inode numbers a line about inodes no entry names lists before "and N more" (as fsck tools cut such lists). */
const NAMELESS_LISTED = 5;

/**
 * The inodes in use that no directory entry names, in one line (an
 * unreadable directory leaves every file under it nameless: thousands of
 * lines said nothing more). The problem carries the first inode number;
 * the link-count repair, which adopts them, scans the whole filesystem.
 */
function reportNameless(nameless: readonly number[], bad: BadInode, problems: ProblemList, geo: ScrubSource['geo']): void {
  const first = nameless[0];
  if (first === undefined) return;
  if (nameless.length === 1) {
    bad(first, 'is in use but no directory entry names it', 'inode', 'nlinks');
    return;
  }
  const listed = nameless.slice(0, NAMELESS_LISTED).join(', ');
  const more = nameless.length > NAMELESS_LISTED ? ` and ${nameless.length - NAMELESS_LISTED} more` : '';
  problems.add('inode', geo.inoAgno(first), geo.inoLocation(first).fsbno,
    `${nameless.length} inodes are in use but no directory entry names them: ${listed}${more}`, 'nlinks', first);
}

/**
 * An rmap's records in memory, or null when its leaves are not in order or
 * cannot all be read (the tree's own look-ups answer then, as they always did).
 */
function* indexRmap(tree: Btree): ScrubSteps<RmapIndex | null> {
  const index = new RmapIndex();
  let ordered = true;
  try {
    yield* eachRecord(tree, (b, off) => {
      if (ordered) ordered = index.add(b, off);
    });
  } catch (e) {
    if (e instanceof RmapfsError) return null;
    throw e;
  }
  return ordered ? index : null;
}

const TYPE_NAMES = new Map([[S_IFREG, 'regular file'], [S_IFDIR, 'directory'], [S_IFLNK, 'symlink'], [S_IFIFO, 'fifo'],
  [S_IFCHR, 'character device'], [S_IFBLK, 'block device'], [S_IFSOCK, 'socket']]);

/** A FIFO, socket or device: no data, size 0. */
export function isSpecialFile(type: number): boolean {
  return type === S_IFIFO || type === S_IFCHR || type === S_IFBLK || type === S_IFSOCK;
}

/** A file type (mode & S_IFMT) in words. */
export function typeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `unknown (${type.toString(8)})`;
}

/**
 * Whether the inode's forks are what a file of `type` (mode & S_IFMT) can
 * hold: a directory a directory btree, a regular file extents or a block
 * map btree, a symlink local data of its size or a short mapped target, a
 * special file nothing. (The forks' own soundness is checked elsewhere.)
 */
export function forksFitType(fs: ScrubSource, inode: Inode, type: number): boolean {
  const rootMagic = (): number | null => {
    const root = inode.dataRoot;
    if (root < 2 || root >= fs.geo.totalBlocks) return null;
    try {
      return fs.cache.read(root, null).data.readUInt32BE(0);
    } catch {
      return null;
    }
  };
  const format = inode.format;
  switch (type) {
    case S_IFDIR: return format === FORK_BTREE && rootMagic() === dirBtreeOps.magic;
    case S_IFREG: return format === FORK_EXTENTS || (format === FORK_BTREE && rootMagic() === bmapBtreeOps.magic);
    case S_IFLNK: return format === FORK_LOCAL ? inode.nextents >= 1 && inode.nextents <= DATA_FORK_SIZE && inode.size === inode.nextents
      : format === FORK_EXTENTS && inode.size >= 1 && inode.size <= SYMLINK_MAX;
    case S_IFIFO: case S_IFCHR: case S_IFBLK: case S_IFSOCK:
      return format === FORK_EXTENTS && inode.nextents === 0 && inode.dataRoot === 0;
    default: return false;
  }
}

/** No verification: a tree checked elsewhere (its blocks as that verification kept them, else walked). */
function* verifiedBefore(pointers: readonly number[] | undefined): Generator<void, boolean | readonly number[], void> {
  return pointers ?? true;
}

function isCleanFreeInodeAt(inode: Inode): boolean {
  const { buf, offset } = inode.dataFork();
  return isCleanFreeInode(buf.data, offset - DATA_FORK_OFFSET);
}

/** How problems name each kind of owned block. */
const KIND_LABELS: Record<OwnedKind, string> = { data: 'data', bmbt: 'btree', dir: 'btree', 'attr-btree': 'attr-btree', 'attr-value': 'attr-value' };

type BadInode = (ino: number, msg: string, structure?: string, type?: StructureName) => void;

/**
 * The rmap must say this inode owns these blocks (at this file offset, or as
 * btree or attribute blocks). Returns whether the block map was blamed.
 */
function checkMapped(fs: ScrubSource, rmapOf: (agno: number) => RmapLookup, inode: Inode, o: OwnedBlocks, bad: BadInode,
  rmapSound: (agno: number) => boolean): boolean {
  const { fsbno, blockcount: count, fileoff, unwritten } = o;
  const agno = fs.geo.agnoOf(fsbno);
  const agbno = fs.geo.agbnoOf(fsbno);
  if (agno >= fs.geo.agCount) {
    // An attribute fork's pointer: the attribute repair's to fix (it finds the value's blocks in the rmap).
    const isAttr = o.kind === 'attr-btree' || o.kind === 'attr-value';
    bad(inode.ino, `${KIND_LABELS[o.kind]} block ${fsbno} is outside the filesystem`, isAttr ? 'attr' : 'inode');
    return false;
  }
  const r = rmapOf(agno).find(agbno);
  const what = o.kind === 'data' ? `extent at ${fsbno} (file block ${fileoff})` : `${KIND_LABELS[o.kind]} block ${fsbno}`;
  if (r === null) {
    // Space a sound rmap (and the free space beside it) says is free: the file's map is what is wrong.
    const mapsWrongly = (o.kind === 'data' || o.kind === 'bmbt') && rmapSound(agno);
    bad(inode.ino, `${what} is not in the rmap`, mapsWrongly ? 'bmbt' : 'rmap');
    return mapsWrongly;
  }
  const forkBits = (RMAP_BMBT_BLOCK | RMAP_ATTR_FORK) >>> 0;
  const flagsOk = ((r.flags & forkBits) >>> 0) === ((rmapFlagsOf(o) & forkBits) >>> 0);
  const covered = r.startblock + r.blockcount >= agbno + count;
  const sameOffset = o.kind !== 'data' || r.offset + (agbno - r.startblock) === fileoff;
  // Written or not: the block map and the rmap must agree (reads of unwritten space return zeroes).
  const sameState = o.kind !== 'data' || ((r.flags & RMAP_UNWRITTEN) !== 0) === unwritten;
  if (r.owner === inode.ino && flagsOk && covered && sameOffset && sameState) return false;
  // A data extent of this file that a sound rmap places elsewhere in the file, in the other state, or over
  // fewer blocks (xfs_scrub's xchk_bmap_xref_rmap): the block map is wrong, and is rebuilt from the rmap.
  // Another owner's block stays the rmap's to answer for: an rmap record's owner damaged looks the same.
  const mapsWrongly = o.kind === 'data' && r.owner === inode.ino && flagsOk && rmapSound(agno);
  bad(inode.ino, `${what}${unwritten ? ' (unwritten)' : ''}: the rmap says [${r.startblock}+${r.blockcount}] owner ${r.ownerExact ?? r.owner} `
    + `offset ${r.offset}${(r.flags & RMAP_UNWRITTEN) !== 0 ? ' (unwritten)' : ''}`, mapsWrongly ? 'bmbt' : 'rmap');
  return mapsWrongly;
}

/**
 * Online salvage of a directory (the method of XFS's
 * fs/xfs/scrub/dir_repair.c, our own way): every entry that still verifies
 * goes into a rebuilt directory btree; what could not be saved is reported.
 *
 * 1. Salvage, in paced slices, from a frozen view (a cache snapshot) so the
 *    directory holds still however long it takes: the blocks the rmap says
 *    the directory's btree owns (owner-blocks.ts) are read one by one, and
 *    every one that is a leaf of this directory (magic, crc, owner = this
 *    inode) gives its entries -- even when the tree's nodes or the inode's
 *    fork root are damaged. Records that fail their checks, and blocks that
 *    do not verify, are counted and named. (A directory is always a btree
 *    here: there is no inline form to salvage.)
 * 2. Live: a directory entry hook (Allocator.addDirentHook, noted by
 *    Directory itself) logs every entry added, replaced or removed since
 *    the snapshot; replayed over the salvage, in order, it makes the result
 *    what the directory holds now -- a writer creating and removing names
 *    during the repair loses nothing.
 * 3. Checks, paced: an entry that points at a free or unreadable inode, at
 *    the directory itself, or at a directory already named here is dropped
 *    (and named); a wrong file type is corrected; ".." must be a directory
 *    that links this one, else one that does is searched for (else the root).
 * 4. Build, paced: the entries packed as records in key order, the new tree
 *    bulk-loaded from them (bulkLoadSteps) outside the cache into free blocks
 *    reserved for it (Allocator.reserveFree: no allocation takes them; after
 *    a crash they are just free) and written in place.
 * 5. Commit, ONE transaction: the reserved blocks claimed for the directory,
 *    the new root, entry count, block count and link count put in the
 *    inode, the names the foreground changed since packing changed in the
 *    new tree by ordinary directory operations, the old blocks (the view's
 *    plus the live rmap changes) reaped.
 *
 * The salvaged entries sit in the JS heap (a 100,000-entry directory is a
 * few MiB), unlike the AG repairs' xfiles.
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import { Btree } from '../btree/btree';
import { BTREE_HDR_SIZE, BtreeGeometry, OFF_LEVEL, OFF_NUMRECS, btreeBufOps } from '../btree/btree-block';
import { Buf } from '../io/buf-cache';
import type { BufOps, CacheSnapshot } from '../io/buf-cache';
import { INODES_PER_BLOCK } from '../format/geometry';
import type { Geometry } from '../format/geometry';
import { INODES_PER_CHUNK, decodeInobt, isInodeFree } from '../alloc/inode-btree';
import type { InobtRecord } from '../alloc/inode-btree';
import { bulkLoadSteps, computeBulkLoadGeometry } from '../btree/bulk-load';
import type { BulkLoadGeometry, BulkLoadResult, RecordSource } from '../btree/bulk-load';
import type { BtreeRootInfo } from '../btree/btree-ops';
import { writeU64 } from '../io/meta-header';
import { BLOCK_SIZE } from '../format/superblock';
import type { AllocatedExtent, DirentUpdate } from '../alloc/alloc';
import { RMAP_ATTR_FORK, RMAP_BMBT_BLOCK, RMAP_KEY_SIZE, encodeRmapKey } from '../rmap/rmap-btree';
import { bnoKey } from '../alloc/alloc-btree';
import type { BtreeCursor } from '../btree/btree';
import { InodeStore } from '../inode/inode';
import { FORK_BTREE } from '../inode/inode-format';
import { ForkBtreeStorage } from '../inode/fork-btree';
import { InodeScanCursor } from '../inode/iscan';
import { DIRENT_SIZE, DOTDOT, DT_DIR, Directory, decodeDirent, dirBtreeOps, direntIno, dtypeOfMode, nameHash } from '../dir/dir';
import type { Rmapfs } from '../fs/rmapfs';
import { FrozenView } from '../scrub/live-scrub';
import type { FileRepairOptions, FileRepairResult } from './file-repair';
import { OwnerBlocks, RepairPacing, formatBlockRanges } from './owner-blocks';
import { reapInodeBlocks } from './reap';

const log = createDebug('rmapfs:repair');

/** The rmap's records of a directory's btree blocks: data fork, btree block. */
const DIR_ROLE = (flags: number): boolean => (flags & RMAP_BMBT_BLOCK) !== 0 && (flags & RMAP_ATTR_FORK) === 0;

/** Entries of another directory read per step of the search for a parent; entries checked per step. */
const ENTRIES_PER_STEP = 32;
/** The blocks of an inode chunk (adjacent). */
const INODE_BLOCKS_PER_CHUNK = INODES_PER_CHUNK / INODES_PER_BLOCK;
/** Adjacent blocks the salvage reads at once. */
const SALVAGE_RUN = 32;
/** Records walked per step while warming the cache for the commit. */
const WARM_RECORDS_PER_STEP = 256;

interface Entry {
  name: Buffer;
  ino: number;
  ftype: number;
  hash: number;
  /** Set by the live hook (the foreground made it: valid by construction). */
  live: boolean;
  /** Its record's place among the packed ones (PackedEntries), -1 before packing. */
  packedAt: number;
  /** The inode number as exact text when the record's is above 2^53 (Dirent.inoExact). */
  inoExact?: string | null;
}

const keyOf = (name: Buffer): string => name.toString('latin1');
const shown = (name: Buffer): string => `'${name.toString()}'`;

/** What the salvage found in the frozen view. */
class DirSalvage {
  readonly entries = new Map<string, Entry>();
  readonly changes: string[] = [];
  /** Blocks the rmap gives the directory that did not verify as its btree blocks. */
  readonly badBlocks: number[] = [];
  /** Entries read from verified leaves (duplicates and bad records not counted). */
  salvaged = 0;
  /** Records of verified leaves that failed their checks. */
  badRecords = 0;
  private applied = 0;

  constructor(readonly ino: number) {}

  /**
   * Reads the blocks as the snapshot has them (runs of adjacent blocks in one
   * read, outside any cache: each is read once) and keeps every entry of
   * every one that is a verified leaf of this directory.
   */
  *salvageBlocks(snap: CacheSnapshot, geo: Geometry, checksummed: boolean, blocks: readonly number[]): Generator<void, void, void> {
    const bufOps = btreeBufOps(dirBtreeOps, new BtreeGeometry(dirBtreeOps, BLOCK_SIZE), geo.uuid, this.ino, checksummed);
    const run = Buffer.alloc(SALVAGE_RUN * BLOCK_SIZE);
    const owned = new Set(blocks);
    for (let i = 0; i < blocks.length;) {
      let n = 1;
      while (n < SALVAGE_RUN && i + n < blocks.length && blocks[i + n] === blocks[i]! + n) n++;
      snap.readBlocks(blocks[i]!, n, run, 0);
      for (let k = 0; k < n; k++) {
        this.salvageBlock(blocks[i + k]!, run.subarray(k * BLOCK_SIZE, (k + 1) * BLOCK_SIZE), bufOps, owned);
        yield;
      }
      i += n;
    }
  }

  private salvageBlock(fsbno: number, b: Buffer, bufOps: BufOps, owned: ReadonlySet<number>): void {
    try {
      bufOps.verifyRead(new Buf(fsbno, b, bufOps));
    } catch {
      this.badBlocks.push(fsbno);
      return;
    }
    if (b.readUInt16BE(OFF_LEVEL) !== 0) return; // a node: its leaves are read on their own
    const n = b.readUInt16BE(OFF_NUMRECS);
    const why: (string | null)[] = [];
    let empty = 0;
    for (let i = 0; i < n; i++) {
      const off = BTREE_HDR_SIZE + i * DIRENT_SIZE;
      // A slot the btree emptied is zeroed (Btree's delete): a count raised over it invents no name.
      if (isZero(b, off, DIRENT_SIZE)) { why.push(null); empty++; continue; }
      why.push(dirBtreeOps.checkRecord!(b, off));
    }
    if (why.some((w, i) => w !== null && !isZero(b, BTREE_HDR_SIZE + i * DIRENT_SIZE, DIRENT_SIZE)) && laidOutAsNode(b, n, fsbno, owned)) {
      // A node whose level now says leaf: keys and pointers, never names -- nothing of it is lost.
      this.changes.push(`block ${fsbno}: its level says leaf, its records are a node's keys and pointers (no names in it)`);
      return;
    }
    if (empty > 0) this.changes.push(`block ${fsbno}: ${empty} empty record${empty === 1 ? '' : 's'} counted in it (no name${empty === 1 ? '' : 's'} there)`);
    for (let i = 0; i < n; i++) {
      const off = BTREE_HDR_SIZE + i * DIRENT_SIZE;
      if (isZero(b, off, DIRENT_SIZE)) continue;
      if (why[i] !== null) {
        this.badRecords++;
        this.changes.push(`entry ${i} of block ${fsbno} dropped: ${why[i]!}`);
        continue;
      }
      const d = decodeDirent(b, off);
      const k = keyOf(d.name);
      const had = this.entries.get(k);
      if (had !== undefined) {
        if (had.ino !== d.ino) this.changes.push(`duplicate entry ${shown(d.name)} (inode ${had.ino}, and ${direntIno(d)} in block ${fsbno}): kept inode ${had.ino}`);
        continue;
      }
      this.entries.set(k, { name: d.name, ino: d.ino, ftype: d.ftype, hash: d.hash, live: false, packedAt: -1, inoExact: d.inoExact });
      this.salvaged++;
    }
  }

  /** Gives the entry its inode's file type when the two disagree (the inode's mode is the source). */
  private checkFileType(fsx: Rmapfs, e: Entry): void {
    const ftype = fileTypeOf(fsx, e.ino);
    if (ftype === null || ftype === e.ftype) return;
    this.changes.push(`entry ${shown(e.name)}: file type ${e.ftype} -> ${ftype} (inode ${e.ino}'s mode)`);
    e.ftype = ftype;
  }

  /** Replays the entry changes logged since the last call. */
  applyLive(updates: readonly DirentUpdate[]): void {
    for (; this.applied < updates.length; this.applied++) {
      const u = updates[this.applied]!;
      const k = keyOf(u.name);
      if (u.op === 'remove') this.entries.delete(k);
      else this.entries.set(k, { name: u.name, ino: u.ino, ftype: u.ftype, hash: nameHash(u.name), live: true, packedAt: -1 });
    }
  }

  /**
   * Drops entries pointing where no entry may point: an invalid inode
   * number, the directory itself, the root, an inode the inode btree calls
   * free, a directory already entered here; and gives every other entry its
   * inode's file type. Live entries are the foreground's own: they are not
   * checked. The inode btree and the inode cores are read in inode order, a
   * few entries per step (looked up afresh after each pause: they may change
   * between them): files made together share inode blocks, so the cores of
   * 100,000 entries cost a read per 8 of them at most, mostly cache hits.
   */
  *checkTargets(fsx: Rmapfs, updates: readonly DirentUpdate[]): Generator<void, void, void> {
    const geo = fsx.fs.geo;
    const drop = (e: Entry, why: string): void => {
      this.entries.delete(keyOf(e.name));
      this.changes.push(`entry ${shown(e.name)} dropped: ${why}`);
    };
    const byAg = new Map<number, Entry[]>();
    const seenDirs = new Map<number, string>();
    for (const e of this.entries.values()) {
      if (e.live || e.name.equals(DOTDOT)) continue;
      if (!geo.isValidIno(e.ino)) drop(e, `inode number ${e.inoExact ?? e.ino} is not valid`);
      else if (e.ino === this.ino) drop(e, 'it points at the directory itself');
      else if (e.ino === fsx.rootIno) drop(e, 'it points at the root directory');
      else if (e.ftype === DT_DIR && seenDirs.has(e.ino)) drop(e, `directory ${e.ino} is already entered here as '${seenDirs.get(e.ino)!}'`);
      else {
        if (e.ftype === DT_DIR) seenDirs.set(e.ino, e.name.toString());
        const agno = geo.inoAgno(e.ino);
        let list = byAg.get(agno);
        if (list === undefined) byAg.set(agno, (list = []));
        list.push(e);
      }
    }
    yield;
    const key = Buffer.alloc(4);
    for (const [agno, list] of byAg) {
      // AG inode numbers < 2^32 and positions < 2^20: one exact numeric sort key.
      const order = new Float64Array(list.length);
      list.forEach((e, i) => { order[i] = geo.inoAgino(e.ino) * 0x100000 + i; });
      order.sort();
      yield;
      for (let at = 0; at < order.length;) {
        this.applyLive(updates);
        const cur = fsx.fs.alloc.ag(agno).ino.cursor();
        let chunk: InobtRecord | null = null;
        for (let step = 0; step < ENTRIES_PER_STEP && at < order.length; step++, at++) {
          const e = list[order[at]! % 0x100000]!;
          if (this.entries.get(keyOf(e.name)) !== e) continue; // changed by the foreground meanwhile
          const agino = geo.inoAgino(e.ino);
          if (chunk === null || agino >= chunk.startino + INODES_PER_CHUNK) {
            key.writeUInt32BE(agino - (agino % INODES_PER_CHUNK));
            chunk = cur.lookup(key, 0, 'le') ? decodeInobt(cur.record(), 0) : null;
            // Its inode blocks in one read: the entries' cores are read next, in inode order.
            if (chunk !== null) fsx.fs.cache.readAhead(geo.inoLocation(geo.ino(agno, chunk.startino)).fsbno, INODE_BLOCKS_PER_CHUNK, fsx.inodes.blockOps);
          }
          if (chunk === null || agino >= chunk.startino + INODES_PER_CHUNK) drop(e, `inode ${e.ino} is not in an inode chunk`);
          else if (isInodeFree(chunk, agino - chunk.startino)) drop(e, `inode ${e.ino} is free`);
          else this.checkFileType(fsx, e);
        }
        yield;
      }
    }
  }
}

function isZero(b: Buffer, off: number, len: number): boolean {
  for (let i = off; i < off + len; i++) if (b[i] !== 0) return false;
  return true;
}

const NODE_GEOMETRY = new BtreeGeometry(dirBtreeOps, BLOCK_SIZE);

/**
 * Whether a block's `n` records read as a node's: keys in ascending order and
 * every pointer a block the rmap gives this directory (not this one). A leaf's
 * names would have to spell block numbers of the directory at each pointer's
 * place for a leaf to pass as one.
 */
function laidOutAsNode(b: Buffer, n: number, fsbno: number, owned: ReadonlySet<number>): boolean {
  if (n === 0 || n > NODE_GEOMETRY.maxNodeRecs) return false;
  for (let i = 0; i < n; i++) {
    const ptr = b.readUInt32BE(NODE_GEOMETRY.ptrOffset(i));
    if (ptr === fsbno || !owned.has(ptr)) return false;
    if (i > 0 && dirBtreeOps.compareKeys(b, NODE_GEOMETRY.keyOffset(i - 1), b, NODE_GEOMETRY.keyOffset(i)) >= 0) return false;
  }
  return true;
}

/** What an entry may say of its file's type: the inode's own mode is the source (XFS's xrep_dir takes it from the inode too). */
function fileTypeOf(fsx: Rmapfs, ino: number): number | null {
  try {
    const mode = fsx.inodes.handle(ino).mode;
    return mode === 0 ? null : dtypeOfMode(mode);
  } catch {
    return null; // an inode block that does not read: the inode core's repair, not this one
  }
}

/** Whether directory `parent` holds an entry (not "..") for inode `child`; read a few entries per step. */
function* linksTo(fsx: Rmapfs, parent: number, child: number): Generator<void, boolean, void> {
  let cookie = 0;
  for (;;) {
    let found = false;
    let more = false;
    try {
      const inode = fsx.inodes.handle(parent);
      if (!inode.isDir || inode.format !== FORK_BTREE) return false;
      let n = 0;
      new Directory(inode, fsx.fs.alloc, fsx.fs.geo).forEachFrom(cookie, (d, next) => {
        cookie = next;
        if (d.ino === child) found = true;
        more = ++n < ENTRIES_PER_STEP;
        return !found && more;
      });
      more = !found && n === ENTRIES_PER_STEP;
    } catch {
      return false; // a parent that cannot be read links nothing we can trust
    }
    if (found) return true;
    if (!more) return false;
    yield;
  }
}

/** A directory other than `child` that links it (an inode scan, a few entries per step), or null. */
function* findParent(fsx: Rmapfs, child: number): Generator<void, number | null, void> {
  const scan = new InodeScanCursor(fsx.fs.alloc, fsx.fs.geo);
  for (let at = scan.next(-1); at !== null; at = scan.next(at)) {
    yield;
    scan.forget(); // the filesystem may change between steps
    if (at === child) continue;
    let isDir = false;
    try {
      isDir = fsx.inodes.handle(at).isDir;
    } catch {
      continue;
    }
    if (isDir && (yield* linksTo(fsx, at, child))) return at;
  }
  return null;
}

/** Writes an entry as a directory record with collision index `cidx`. */
function writeRecord(dst: Buffer, off: number, e: Entry, cidx: number): void {
  dst.fill(0, off, off + DIRENT_SIZE);
  dst.writeUInt32BE(e.hash >>> 0, off);
  dst.writeUInt16BE(cidx, off + 4);
  dst.writeUInt8(e.ftype, off + 6);
  dst.writeUInt8(e.name.length, off + 7);
  writeU64(dst, off + 8, e.ino);
  e.name.copy(dst, off + 16);
}

/**
 * The entries as records in key order, packed before the commit (in steps)
 * so the commit copies runs of them rather than building 100,000 records in
 * its pause. Entries the foreground changes after packing are merged in by
 * the commit (mergedSource).
 */
class PackedEntries {
  records = Buffer.alloc(0);
  count = 0;
  /** How many logged entry changes the packed set includes. */
  throughUpdate = 0;

  *pack(salvage: DirSalvage, updates: readonly DirentUpdate[]): Generator<void, void, void> {
    salvage.applyLive(updates);
    this.throughUpdate = updates.length;
    const entries = [...salvage.entries.values()];
    // One numeric sort: hash * 2^20 + position is exact in a double (entriesOverflow keeps n below 2^20).
    const order = new Float64Array(entries.length);
    entries.forEach((e, i) => { order[i] = e.hash * 0x100000 + i; });
    order.sort();
    yield;
    this.records = Buffer.allocUnsafeSlow(entries.length * DIRENT_SIZE);
    this.count = entries.length;
    let prevHash = -1;
    let cidx = 0;
    for (let p = 0; p < entries.length; p++) {
      const e = entries[order[p]! % 0x100000]!;
      cidx = e.hash === prevHash ? cidx + 1 : 0;
      prevHash = e.hash;
      writeRecord(this.records, p * DIRENT_SIZE, e, cidx);
      e.packedAt = p;
      if (p % 32 === 31) yield;
    }
  }
}

/**
 * Rebuilds directory `ino` online from what still verifies (see the top of
 * this file). The old directory stays in use until the one commit.
 */
export async function repairDirectory(fsx: Rmapfs, ino: number, options: FileRepairOptions = {}): Promise<FileRepairResult> {
  const fs = fsx.fs;
  const alloc = fs.alloc;
  const t0 = process.hrtime.bigint();
  if (!fsx.inodes.get(ino).isDir) throw new RmapfsError('ENOTDIR', `inode ${ino} is not a directory`);
  if (entriesOverflow(fsx, ino)) throw new RmapfsError('EFBIG', `directory ${ino}: too many entries to salvage`);
  const pacing = new RepairPacing(options, `directory ${ino}`);
  // The snapshot, the rmap hook and the entry hook start in one turn: the view plus the logs is "now".
  const snap = fs.cache.openSnapshot();
  const view = new FrozenView(fs, snap);
  const owned = new OwnerBlocks(alloc, ino, DIR_ROLE);
  const updates: DirentUpdate[] = [];
  let hookError: unknown = null;
  const entryHook = (u: DirentUpdate): void => { if (u.dir === ino) updates.push(u); };
  alloc.addDirentHook(entryHook, (e) => { hookError = e; });
  const salvage = new DirSalvage(ino);
  let prebuilt: Prebuilt | null = null;
  // Where the time goes, for the log (bench/dir-repair with DEBUG=rmapfs:repair).
  const phases: string[] = [];
  let lastLap = t0;
  const lap = (what: string): void => {
    const now = process.hrtime.bigint();
    phases.push(`${what} ${(Number(now - lastLap) / 1e6).toFixed(1)}`);
    lastLap = now;
  };
  try {
    await pacing.run(owned.walk(view.alloc));
    lap('rmap walk');
    await pacing.run(salvage.salvageBlocks(snap, fs.geo, fs.cache.target.checksummed, owned.walkedBlocks()));
    lap('salvage');
    if (snap.spoiled !== null) throw new RmapfsError('EAGAIN', `repair of directory ${ino}: the frozen view was spoiled (${snap.spoiled}); try again`);
    const countedThen = new InodeStore(view.cache, view.geo, view.alloc).handle(ino).nextents;
    snap.close();
    const lost = Math.max(0, countedThen - salvage.salvaged - salvage.badRecords);
    if (salvage.badBlocks.length > 0 || lost > 0) {
      salvage.changes.unshift(`${lost} name${lost === 1 ? '' : 's'} lost`
        + (salvage.badBlocks.length > 0 ? ` (block${salvage.badBlocks.length === 1 ? '' : 's'} ${formatBlockRanges(salvage.badBlocks)} did not verify)` : ''));
    }
    salvage.applyLive(updates);
    await pacing.run(salvage.checkTargets(fsx, updates));
    lap('inode checks');
    await pacing.run(fixDotdot(fsx, ino, salvage, updates));
    lap('parent');
    const packed = new PackedEntries();
    await pacing.run(packed.pack(salvage, updates));
    lap('pack');
    // The new tree is built in memory touched now, not during the pause (a first write to a page is slow here).
    const arena = await touchedArena(fsx, ino, salvage.entries.size, pacing);
    lap('arena');
    prebuilt = await prebuild(fsx, ino, packed, arena, pacing);
    lap('build and write');
    await pacing.run(warmForCommit(fsx, ino, prebuilt, owned, updates, packed.throughUpdate));
    lap('warm');
    if (hookError !== null) throw new RmapfsError('EIO', `repair of directory ${ino}: the live entry hook failed; the old directory is kept`);
    owned.throwIfAborted();
    const scanMs = Number(process.hrtime.bigint() - t0) / 1e6;
    // Nothing runs between here and the commit: the hooks have nothing more to hear.
    alloc.removeDirentHook(entryHook);
    owned.close();
    const c0 = process.hrtime.bigint();
    lastLap = c0;
    const built = prebuilt;
    fs.run(() => commitDirectory(fsx, ino, salvage, updates, packed, owned, built, lap));
    const commitPauseMs = Number(process.hrtime.bigint() - c0) / 1e6;
    log('directory %d rebuilt: %d entries (%d salvaged, %d live changes), %d changes; scan %d ms, pause %s ms (ms: %s)',
      ino, salvage.entries.size, salvage.salvaged, updates.length, salvage.changes.length, Math.round(scanMs), commitPauseMs.toFixed(1),
      phases.join(', '));
    return { type: 'directory', ino, path: null, changes: salvage.changes, commitPauseMs };
  } finally {
    snap.close();
    owned.close();
    alloc.removeDirentHook(entryHook);
    if (prebuilt !== null) alloc.releaseReserved(prebuilt.extents); // none left once the commit claimed them
  }
}

/** More entries than one numeric sort key can order (see recordSource). */
function entriesOverflow(fsx: Rmapfs, ino: number): boolean {
  return fsx.inodes.get(ino).nextents >= 0x100000;
}

/** Sets ".." to a directory that links this one (the one it named when it does). */
function* fixDotdot(fsx: Rmapfs, ino: number, salvage: DirSalvage, updates: readonly DirentUpdate[]): Generator<void, void, void> {
  const key = keyOf(DOTDOT);
  const had = salvage.entries.get(key);
  const set = (parent: number, why: string): void => {
    salvage.entries.set(key, { name: DOTDOT, ino: parent, ftype: DT_DIR, hash: nameHash(DOTDOT), live: false, packedAt: -1 });
    salvage.changes.push(`'..' ${had === undefined ? 'was missing' : `was ${had.inoExact ?? had.ino}`}, set to ${parent} (${why})`);
  };
  if (ino === fsx.rootIno) {
    if (had?.ino !== ino || had.ftype !== DT_DIR) set(ino, 'the root is its own parent');
    return;
  }
  if (had !== undefined && (had.live || (yield* linksTo(fsx, had.ino, ino)))) {
    if (had.ftype !== DT_DIR) {
      salvage.changes.push(`'..': file type ${had.ftype} -> ${DT_DIR}`);
      had.ftype = DT_DIR;
    }
    return;
  }
  const parent = yield* findParent(fsx, ino);
  salvage.applyLive(updates);
  if (salvage.entries.get(key)?.live === true) return; // moved meanwhile: the foreground set it
  if (parent !== null) set(parent, 'the directory that links it');
  else set(fsx.rootIno, 'no directory links it');
}

/** A buffer for the new tree's blocks (with room for entries added before the commit), every page written once, in steps. */
async function touchedArena(fsx: Rmapfs, ino: number, entries: number, pacing: RepairPacing): Promise<Buffer> {
  const tree = new Btree(dirBtreeOps, new ForkBtreeStorage(fsx.inodes.get(ino), 'data', fsx.fs.alloc, fsx.fs.geo));
  const blocks = newTreeGeometry(tree, entries + 256).totalBlocks;
  const arena = Buffer.allocUnsafeSlow(blocks * BLOCK_SIZE);
  const step = 16 * BLOCK_SIZE;
  for (let at = 0; at < arena.length; at += step) {
    arena.fill(0, at, Math.min(arena.length, at + step));
    if (pacing.due()) await pacing.pause();
  }
  return arena;
}

/**
 * The new tree's shape: leaves one entry short of full, so a name the
 * foreground adds before the commit (applied in the commit's pause) rarely
 * splits a leaf -- a split allocates a block, an rmap and free-space update.
 */
function newTreeGeometry(tree: Btree, entries: number): BulkLoadGeometry {
  const perLeaf = tree.geo.maxRecs(0);
  return computeBulkLoadGeometry(tree, entries, perLeaf > 1 ? (perLeaf - 1) / perLeaf : 1);
}

/** The new tree built and written before the commit, in reserved free blocks. */
interface Prebuilt {
  extents: AllocatedExtent[];
  root: BtreeRootInfo;
  blocks: number;
}

/** The name of the packed record at `at`. */
function packedName(packed: PackedEntries, at: number): Buffer {
  const off = at * DIRENT_SIZE;
  return packed.records.subarray(off + 16, off + 16 + packed.records.readUInt8(off + 7));
}

/**
 * Builds the new tree from the packed records in paced steps, in free blocks
 * reserved for it (Allocator.reserveFree: no allocation takes them, and
 * nothing on disk points at them until the commit claims them), and writes
 * it in place: the commit then only claims the blocks, applies the names
 * changed since packing and reaps. ENOSPC when free space is short.
 */
async function prebuild(fsx: Rmapfs, ino: number, packed: PackedEntries, arena: Buffer, pacing: RepairPacing): Promise<Prebuilt> {
  const fs = fsx.fs;
  const tree = new Btree(dirBtreeOps, new ForkBtreeStorage(fsx.inodes.get(ino), 'data', fs.alloc, fs.geo));
  const geometry = newTreeGeometry(tree, packed.count);
  const extents = fs.alloc.reserveFree(geometry.totalBlocks, fs.geo.inoLocation(ino).fsbno);
  if (extents === null) {
    throw new RmapfsError('ENOSPC', `directory ${ino}: no ${geometry.totalBlocks} free blocks to rebuild it in (the old directory is kept)`);
  }
  try {
    const ptrs: number[] = [];
    for (const e of extents) for (let i = 0; i < e.len; i++) ptrs.push(e.fsbno + i);
    let taken = 0;
    let next = 0;
    const source: RecordSource = {
      nextRun(dst, off, max) {
        const n = Math.min(max, packed.count - next);
        packed.records.copy(dst, off, next * DIRENT_SIZE, (next + n) * DIRENT_SIZE);
        next += n;
        return n;
      },
      next(dst, off) { this.nextRun!(dst, off, 1); },
    };
    const steps = bulkLoadSteps(tree, geometry, source, () => ptrs[taken++]!,
      { outside: true, arena: arena.length >= geometry.totalBlocks * BLOCK_SIZE ? arena : undefined });
    let loaded: BulkLoadResult;
    for (;;) {
      const r = steps.next();
      if (r.done === true) {
        loaded = r.value;
        break;
      }
      if (pacing.due()) await pacing.pause();
    }
    for (let i = 0; i < loaded.blocks.length; i += SALVAGE_RUN) {
      fs.cache.writeAround(loaded.blocks.slice(i, i + SALVAGE_RUN));
      fs.noteDataWritten(); // the log force that records the commit syncs these first
      if (pacing.due()) await pacing.pause();
    }
    return { extents, root: { ptr: loaded.ptr, height: loaded.height }, blocks: ptrs.length };
  } catch (e) {
    fs.alloc.releaseReserved(extents);
    throw e;
  }
}

/**
 * Reads into the cache, before the commit, the blocks its pause would
 * otherwise read from the device: the rmap and by-block free-space leaves
 * around the old blocks and the whole by-size tree (the reap), and the new
 * tree's path to every name changed since packing (it was written outside
 * the cache). A read changes nothing, so a block changed after it is just
 * read again in the commit: cold reads were most of the pause's CPU time.
 */
function* warmForCommit(fsx: Rmapfs, ino: number, prebuilt: Prebuilt, owned: OwnerBlocks,
  updates: readonly DirentUpdate[], fromUpdate: number): Generator<void, void, void> {
  const alloc = fsx.fs.alloc;
  const key = Buffer.alloc(RMAP_KEY_SIZE);
  for (const [agno, set] of owned.current()) {
    if (set.blocks === 0) continue;
    let lo = Infinity;
    let hi = -1;
    set.walk((start, len) => { lo = Math.min(lo, start); hi = Math.max(hi, start + len); });
    const ag = alloc.ag(agno);
    encodeRmapKey(lo, 0, 0, 0, key);
    yield* walkRange(ag.rmap.cursor(), key, (rec) => rec.readUInt32BE(0) >= hi);
    yield* walkRange(ag.bno.cursor(), bnoKey(lo, key), (rec) => rec.readUInt32BE(0) >= hi);
    yield* walkRange(ag.cnt.cursor(), null, () => false);
  }
  const inode = fsx.inodes.get(ino);
  const storage = new ForkBtreeStorage(inode, 'data', alloc, fsx.fs.geo);
  const newTree = new Btree(dirBtreeOps, {
    cache: storage.cache, uuid: storage.uuid, owner: storage.owner,
    bnoOf: (ptr) => storage.bnoOf(ptr), isValidPtr: (ptr) => storage.isValidPtr(ptr), blockLimit: () => storage.blockLimit(),
    allocBlock: () => { throw new RmapfsError('EROFS', `directory ${ino}: the new tree is read, not changed, before its commit`); },
    freeBlock: () => { throw new RmapfsError('EROFS', `directory ${ino}: the new tree is read, not changed, before its commit`); },
    getRoot: () => prebuilt.root,
    setRoot: () => { throw new RmapfsError('EROFS', `directory ${ino}: the new tree is read, not changed, before its commit`); },
  });
  const rec = Buffer.alloc(DIRENT_SIZE);
  const dirKey = Buffer.alloc(DIRENT_SIZE);
  const cur = newTree.cursor();
  for (let u = fromUpdate; u < updates.length; u++) {
    rec.writeUInt32BE(nameHash(updates[u]!.name) >>> 0, 0);
    dirBtreeOps.keyFromRec(rec, 0, dirKey, 0);
    cur.lookup(dirKey, 0, 'le');
    if (u % ENTRIES_PER_STEP === ENTRIES_PER_STEP - 1) yield;
  }
}

/** Walks records from the last at or before `key` (the first when null) until `past` says stop, pausing every few. */
function* walkRange(cur: BtreeCursor, key: Buffer | null, past: (rec: Buffer) => boolean): Generator<void, void, void> {
  let n = 0;
  for (let ok = key === null ? cur.first() : (cur.lookup(key, 0, 'le') || cur.first()); ok && !past(cur.record()); ok = cur.increment()) {
    if (++n % WARM_RECORDS_PER_STEP === 0) yield;
  }
}

/** The commit transaction: the new tree in, the old blocks out. */
function commitDirectory(fsx: Rmapfs, ino: number, salvage: DirSalvage, updates: readonly DirentUpdate[],
  packed: PackedEntries, owned: OwnerBlocks, prebuilt: Prebuilt, lap: (what: string) => void): void {
  const fs = fsx.fs;
  const alloc = fs.alloc;
  const inode = fsx.inodes.get(ino);
  if (!inode.isDir) throw new RmapfsError('ENOENT', `directory ${ino} was removed during its repair`);
  // Names the foreground changed since packing: their packed records out, their entries now in.
  const touched = new Set<string>();
  for (let u = packed.throughUpdate; u < updates.length; u++) touched.add(keyOf(updates[u]!.name));
  const skip = new Set<number>();
  for (const k of touched) {
    const was = salvage.entries.get(k);
    if (was !== undefined && was.packedAt >= 0) skip.add(was.packedAt);
  }
  salvage.applyLive(updates);
  const adds: Entry[] = [];
  for (const k of touched) {
    const e = salvage.entries.get(k);
    if (e !== undefined) adds.push(e);
  }
  adds.sort((x, y) => x.hash - y.hash);
  const old = owned.current();
  // The tree written before the commit goes in as it is; the names changed since packing are
  // changed in it by ordinary directory operations (a few: the last slices' worth).
  alloc.claimReserved(prebuilt.extents, ino, RMAP_BMBT_BLOCK);
  inode.format = FORK_BTREE;
  inode.dataRoot = prebuilt.root.ptr;
  inode.dataHeight = prebuilt.root.height;
  inode.nextents = packed.count;
  inode.nblocks = inode.nblocks + prebuilt.blocks;
  lap('commit: claim');
  const dir = new Directory(inode, alloc, fs.geo);
  for (const at of skip) {
    const name = packedName(packed, at);
    if (!name.equals(DOTDOT)) dir.remove(name);
  }
  for (const e of adds) {
    if (e.name.equals(DOTDOT)) dir.replace(DOTDOT, e.ino, DT_DIR);
    else dir.add(e.name, e.ino, e.ftype);
  }
  lap(`commit: ${skip.size + adds.length} changes since packing`);
  let freed = 0;
  for (const [agno, set] of old) freed += reapInodeBlocks(alloc, agno, set, ino, RMAP_BMBT_BLOCK);
  lap(`commit: reap (${freed} blocks)`);
  inode.nblocks = inode.nblocks - freed;
  let subdirs = 0;
  for (const e of salvage.entries.values()) if (e.ftype === DT_DIR && !e.name.equals(DOTDOT)) subdirs++;
  const links = 2 + subdirs;
  if (inode.nlink !== links) {
    salvage.changes.push(`link count ${inode.nlink} -> ${links}`);
    inode.nlink = links;
  }
}

/**
 * Online repair of an inode core (the method of XFS's
 * fs/xfs/scrub/inode_repair.c), in ONE transaction per inode:
 *
 * - its identity (magic, number from its slot, UUID, version, a possible
 *   fork format) restored and its crc made anew (a bad crc is accepted:
 *   every field is then checked below). Only its own: each inode of a
 *   block is verified where it is loaded, so a neighbour reads on;
 * - impossible values made safe: an unknown file type guessed from what the
 *   forks hold (a directory btree, a block map, local data), flags nothing
 *   uses cleared, a data fork format the type cannot have emptied (the block
 *   map repair then rebuilds it from the rmap: `leftFor`), stray attribute
 *   fork fields of an absent fork cleared;
 * - what can be recomputed, recomputed: the block count and the attribute
 *   count from forks that verify (a fork that does not is its own
 *   structure's repair, which sets the count too), a file's size set to
 *   the end of its last mapped block when blocks lie past it or it is past
 *   the largest file (the exact end within that block is lost: said so), a directory's
 *   size 0;
 * - an inode that cannot be made safe -- nothing in it says what it was and
 *   it holds nothing -- is cleared and freed (its inode btree bit); a
 *   directory entry naming it is the directory repair's to drop. So is a
 *   free inode left holding junk.
 *
 * The link count is the link-count repair's (a scan of every directory).
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import type { Btree } from '../btree/btree';
import { verifyBtreeSteps } from '../btree/verify';
import { MAX_BTREE_HEIGHT } from '../btree/btree-block';
import { decodeInobt, INODES_PER_CHUNK, isInodeFree } from '../alloc/inode-btree';
import { dirBtreeOps } from '../dir/dir';
import { ownedBy, PAUSE } from '../file/owned';
import { readU64, u64Text, uuidAt, writeU64 } from '../io/meta-header';
import {
  ATTR_BTREE, ATTR_FORK_SIZE, ATTR_LOCAL, ATTR_NONE, DATA_FORK_OFFSET, DATA_FORK_SIZE, FORK_BTREE,
  FORK_EXTENTS, FORK_LOCAL, INODE_MAGIC, INODE_VERSION, MAX_INLINE_EXTENTS, OFF_I_DHEIGHT, OFF_I_DROOT, OFF_I_FORMAT, OFF_I_GEN,
  OFF_I_INO, OFF_I_NEXTENTS, OFF_I_UUID, OFF_I_VERSION, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK, formatFreeInode,
  isCleanFreeInode, OFF_I_MODE, decodeExtent, EXTENT_SIZE, badCrcSlots, IFLAGS_DEFINED,
} from '../inode/inode-format';
import type { Inode, InodeStore } from '../inode/inode';
import { BLOCK_SIZE } from '../format/superblock';
import { INODE_SIZE } from '../format/geometry';
import type { StructureName } from '../format/structures';
import type { Rmapfs } from '../fs/rmapfs';
import type { Filesystem } from '../fs/filesystem';
import { bmapBtreeOps } from '../file/bmap';
import { MAX_FILE_SIZE } from '../file/file';
import { forksFitType, isSpecialFile, typeName } from '../scrub/inode-scrub';
import { findPaths } from './file-paths';
import { rmapFind } from '../rmap/rmap';
import { OWN_INODES } from '../format/owners';
import type { FileRepairOptions, FileRepairResult } from './file-repair';

const log = createDebug('rmapfs:repair');

const FILE_TYPES = new Set([S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK]);
/** Any flag bit outside the defined ones is damage. */
const KNOWN_FLAGS = IFLAGS_DEFINED;

/** Whether the inode btree calls the inode free (null: its chunk is not there). */
function freeInInodeBtree(fsx: Rmapfs, ino: number): boolean | null {
  const geo = fsx.fs.geo;
  const agino = geo.inoAgino(ino);
  const startino = agino - (agino % INODES_PER_CHUNK);
  const key = Buffer.alloc(4);
  key.writeUInt32BE(startino, 0);
  const cur = fsx.fs.alloc.ag(geo.inoAgno(ino)).ino.cursor();
  if (!cur.lookup(key, 0, 'eq')) return null;
  return isInodeFree(decodeInobt(cur.record(), 0), agino - startino);
}

/**
 * A data fork format that cannot be, made safe from what the fork holds: a
 * btree when the core names a root block that is a block map's or a
 * directory's, the inline extents when they all lie in the filesystem, local
 * data in a symlink; else an empty fork (what it mapped is the block map's
 * repair, from the rmap: named in leftFor). The fix made.
 */
function safeDataFormat(fs: Filesystem, b: Buffer, offset: number, leftFor: Set<StructureName>): string {
  const geo = fs.geo;
  const format = b.readUInt8(offset + OFF_I_FORMAT);
  const type = b.readUInt16BE(offset + OFF_I_MODE) & S_IFMT;
  const count = b.readUInt32BE(offset + OFF_I_NEXTENTS);
  const root = b.readUInt32BE(offset + OFF_I_DROOT);
  const height = b.readUInt32BE(offset + OFF_I_DHEIGHT);
  const set = (to: number, what: string): string => {
    b.writeUInt8(to, offset + OFF_I_FORMAT);
    return `data fork format ${format} -> ${what}`;
  };
  if (root >= 2 && root < geo.totalBlocks && height >= 1 && height <= MAX_BTREE_HEIGHT) {
    const magic = rootMagic(fs, root);
    if (magic === bmapBtreeOps.magic || magic === dirBtreeOps.magic) return set(FORK_BTREE, 'btree (its root block is one)');
  }
  if (type === S_IFLNK && count >= 1 && count <= DATA_FORK_SIZE) return set(FORK_LOCAL, 'local (a symlink target)');
  if (count >= 1 && count <= MAX_INLINE_EXTENTS && type !== S_IFDIR) {
    let plausible = true;
    for (let i = 0; i < count; i++) {
      const e = decodeExtent(b, offset + DATA_FORK_OFFSET + i * EXTENT_SIZE);
      plausible &&= e.blockcount > 0 && e.fsbno >= 2 && e.fsbno + e.blockcount <= geo.totalBlocks;
    }
    if (plausible) return set(FORK_EXTENTS, `extents (the ${count} it holds)`);
  }
  b.fill(0, offset + DATA_FORK_OFFSET, offset + DATA_FORK_OFFSET + DATA_FORK_SIZE);
  b.writeUInt32BE(0, offset + OFF_I_NEXTENTS);
  b.writeUInt32BE(0, offset + OFF_I_DROOT);
  b.writeUInt32BE(0, offset + OFF_I_DHEIGHT);
  leftFor.add(type === S_IFDIR ? 'directory' : 'bmap');
  return set(FORK_EXTENTS, `an empty fork (nothing in it reads as one; ${type === S_IFDIR ? 'the directory' : 'the block map'} is rebuilt)`);
}

/**
 * Restores what identifies inode ino (magic, version, number from its slot,
 * UUID from the superblock, a possible fork format) and lets its crc be
 * made anew on the way out; its block is read unverified (it may hold no
 * sound inode at all). Only this inode: its neighbours are verified (and
 * repaired) on their own. The fixes made, one line each. Used online and
 * by the offline repair for a root inode the mount refuses.
 */
export function restoreInodeIdentity(fs: Filesystem, inodes: InodeStore, ino: number, leftFor: Set<StructureName>): string[] {
  const geo = fs.geo;
  const { fsbno, offset } = geo.inoLocation(ino);
  const buf = fs.cache.read(fsbno, null);
  const b = buf.data;
  const slotBit = 1 << (offset / INODE_SIZE);
  const fixed: string[] = [];
  // The crc's verdict as read (a dirty block's crcs are stale until it goes out): unknown when the
  // block never verified as an inode block (any store's ops) -- then checked here, on the bytes as they are.
  const verified = buf.ops !== null && buf.ops.name === inodes.blockOps.name;
  if (!verified && !buf.dirty) {
    // Its neighbours' bad crcs are noted before the block is made an inode block, or its write would bless them.
    buf.damagedParts = badCrcSlots(b);
  }
  const badCrc = (buf.damagedParts & slotBit) !== 0;
  if (b.readUInt32BE(offset) !== INODE_MAGIC && readU64(b, offset + OFF_I_INO) !== ino) {
    // Magic and number both lost (random bytes over the block): nothing left in it can be believed, not
    // even its mode. Formatted free: the core repair frees it in the inode btree if it was in use there,
    // the directory repair drops an entry naming it, and the rmap's rebuild lets its blocks go.
    formatFreeInode(b, offset, ino, geo.uuid);
    fixed.push('destroyed (magic and inode number both lost): formatted free');
    buf.damagedParts &= ~slotBit;
    buf.ops = inodes.blockOps;
    fs.cache.markDirty(buf);
    return fixed;
  }
  if (b.readUInt32BE(offset) !== INODE_MAGIC) {
    fixed.push(`magic restored (it read 0x${b.readUInt32BE(offset).toString(16)})`);
    b.writeUInt32BE(INODE_MAGIC, offset);
  }
  if (b.readUInt8(offset + OFF_I_VERSION) !== INODE_VERSION) {
    fixed.push(`version ${b.readUInt8(offset + OFF_I_VERSION)} -> ${INODE_VERSION}`);
    b.writeUInt8(INODE_VERSION, offset + OFF_I_VERSION);
  }
  if (readU64(b, offset + OFF_I_INO) !== ino) {
    fixed.push(`inode number ${u64Text(b, offset + OFF_I_INO)} -> ${ino} (its slot)`);
    writeU64(b, offset + OFF_I_INO, ino);
  }
  if (!uuidAt(b, offset + OFF_I_UUID, geo.uuid)) {
    geo.uuid.copy(b, offset + OFF_I_UUID);
    fixed.push('filesystem UUID restored');
  }
  if (b.readUInt8(offset + OFF_I_FORMAT) > FORK_LOCAL) fixed.push(safeDataFormat(fs, b, offset, leftFor));
  if (badCrc) fixed.push('bad crc32c made anew (every field checked below)');
  if (fixed.length > 0 || !verified) {
    buf.damagedParts &= ~slotBit;
    buf.ops = inodes.blockOps;
    fs.cache.markDirty(buf);
  }
  return fixed;
}

/** The magic of a btree root block, or null when it cannot be read. */
function rootMagic(fs: Filesystem, ptr: number): number | null {
  if (ptr < 2 || ptr >= fs.geo.totalBlocks) return null;
  try {
    return fs.cache.read(ptr, null).data.readUInt32BE(0);
  } catch {
    return null;
  }
}

/** What the forks say the inode is, for a mode whose type is lost (null: nothing says). */
function guessType(fsx: Rmapfs, inode: Inode): number | null {
  if (inode.format === FORK_LOCAL) return inode.nextents > 0 ? S_IFLNK : null;
  if (inode.format === FORK_BTREE) {
    const magic = rootMagic(fsx.fs, inode.dataRoot);
    if (magic === dirBtreeOps.magic) return S_IFDIR;
    return S_IFREG;
  }
  if (inode.nextents > 0 || inode.size > 0) return S_IFREG;
  if (inode.rdev !== 0) return S_IFCHR;
  if (inode.attrFormat !== ATTR_NONE) return S_IFREG;
  return null;
}

/** Empties the data fork (no extents, no root): what it mapped is rebuilt by the block map repair. */
function emptyDataFork(fsx: Rmapfs, inode: Inode): void {
  const { buf, offset } = inode.dataFork();
  buf.data.fill(0, offset, offset + DATA_FORK_SIZE);
  fsx.fs.cache.markDirty(buf);
  inode.format = FORK_EXTENTS;
  inode.nextents = 0;
  inode.dataRoot = 0;
  inode.dataHeight = 0;
}

/** Whether the data fork's format and shape are possible for the inode's type (not: why). */
function impossibleDataFork(fsx: Rmapfs, inode: Inode): string | null {
  const type = inode.mode & S_IFMT;
  const format = inode.format;
  const rootOk = (): boolean => inode.dataRoot >= 2 && inode.dataRoot < fsx.fs.geo.totalBlocks
    && inode.dataHeight >= 1 && inode.dataHeight <= MAX_BTREE_HEIGHT;
  if (type === S_IFDIR) return null; // a directory's fork is the directory repair's
  if (type === S_IFREG && format === FORK_LOCAL) return 'local data in a regular file';
  if (type === S_IFLNK && format === FORK_LOCAL) return null; // its length is the symlink repair's
  if (type !== S_IFREG && type !== S_IFLNK && (format !== FORK_EXTENTS || inode.nextents !== 0 || inode.dataRoot !== 0)) {
    return 'a special file with a data fork';
  }
  if (format === FORK_EXTENTS && inode.nextents > MAX_INLINE_EXTENTS) return `${inode.nextents} inline extents`;
  if (format === FORK_BTREE && !rootOk()) return `block map root ${inode.dataRoot} height ${inode.dataHeight}`;
  if (format === FORK_BTREE && rootMagic(fsx.fs, inode.dataRoot) === dirBtreeOps.magic) return 'a directory btree in a file';
  return null;
}

/** Fixes the attribute fork's fields that an absent or local fork cannot have; the fixes made. */
function tidyAttrFork(fsx: Rmapfs, inode: Inode, leftFor: Set<StructureName>): string[] {
  const fixed: string[] = [];
  const format = inode.attrFormat;
  if (format !== ATTR_NONE && format !== ATTR_LOCAL && format !== ATTR_BTREE) {
    leftFor.add('xattr');
    return fixed;
  }
  if (format === ATTR_NONE && (inode.attrLocalBytes !== 0 || inode.attrRoot !== 0 || inode.attrHeight !== 0 || inode.attrCount !== 0)) {
    const { buf, offset } = inode.attrFork();
    buf.data.fill(0, offset, offset + ATTR_FORK_SIZE);
    fsx.fs.cache.markDirty(buf);
    inode.attrLocalBytes = 0;
    inode.attrRoot = 0;
    inode.attrHeight = 0;
    inode.attrCount = 0;
    fixed.push('attribute fork fields of an absent fork cleared');
  }
  if (format === ATTR_LOCAL && (inode.attrRoot !== 0 || inode.attrHeight !== 0)) {
    inode.attrRoot = 0;
    inode.attrHeight = 0;
    fixed.push('attribute btree root of a local attribute fork cleared');
  }
  if (format === ATTR_BTREE && inode.attrRoot === 0) leftFor.add('xattr');
  return fixed;
}

interface ForkCounts {
  /** Every block both forks hold. */
  blocks: number;
  /** The end of the last data extent, in blocks. */
  dataEnd: number;
  /** Records of the attribute btree (null: none). */
  attrRecords: number | null;
}

/** Counts what the forks hold, verifying each tree first; null (and the fork's structure named) when one does not verify. */
function countForks(fsx: Rmapfs, inode: Inode, leftFor: Set<StructureName>): ForkCounts | null {
  const fs = fsx.fs;
  let attrRecords: number | null = null;
  let sound = true;
  const verify = function* (tree: Btree, kind: 'bmbt' | 'dir' | 'attr-btree'): Generator<void, boolean, void> {
    const v = yield* verifyBtreeSteps(tree);
    if (!v.ok) {
      sound = false;
      leftFor.add(kind === 'bmbt' ? 'bmap' : kind === 'dir' ? 'directory' : 'xattr');
    }
    if (kind === 'attr-btree' && v.ok) attrRecords = v.records;
    return v.ok;
  };
  let blocks = 0;
  let dataEnd = 0;
  const ctx = { device: fs.device, alloc: fs.alloc, geo: fs.geo, noteDataWritten: () => fs.noteDataWritten() };
  try {
    for (const o of ownedBy(inode, ctx, { readBlocks: false, beforeTree: verify })) {
      if (o === PAUSE) continue;
      blocks += o.blockcount;
      // Unwritten blocks may lie past EOF (fallocate KEEP_SIZE): only written ones say where the file ends.
      if (o.kind === 'data' && !o.unwritten) dataEnd = Math.max(dataEnd, o.fileoff + o.blockcount);
    }
  } catch (e) {
    if (!(e instanceof RmapfsError)) throw e;
    log('inode %d: its forks cannot be walked: %s', inode.ino, e.message);
    leftFor.add(inode.isDir ? 'directory' : 'bmap');
    return null;
  }
  return sound ? { blocks, dataEnd, attrRecords } : null;
}

/**
 * Whether ino's block is one of an inode chunk both the inode btree and the
 * rmap know: nothing else may be written as an inode (a damaged inode btree
 * makes "inodes" of blocks that hold file data).
 */
function inChunk(fsx: Rmapfs, ino: number): boolean {
  const geo = fsx.fs.geo;
  const { fsbno } = geo.inoLocation(ino);
  const r = rmapFind(fsx.fs.alloc.ag(geo.agnoOf(fsbno)).rmap, geo.agbnoOf(fsbno));
  return r !== null && r.owner === OWN_INODES && freeInInodeBtree(fsx, ino) !== null;
}

/**
 * The file type the directory entries naming ino give it, when the inode's
 * own type does not fit its forks and the entries' does (a second source:
 * XFS's dirent file type): null otherwise. Costs a walk of the namespace
 * (findPaths, paced), done only when the forks contradict the type.
 */
async function typeFromEntries(fsx: Rmapfs, ino: number, options: FileRepairOptions): Promise<number | null> {
  let inode: Inode;
  try {
    inode = fsx.inodes.get(ino);
  } catch {
    return null; // its identity first (this repair's transaction); the next scrub looks again
  }
  const type = inode.mode & S_IFMT;
  if (!FILE_TYPES.has(type) || forksFitType(fsx.fs, inode, type)) return null;
  const entryTypes = new Map<number, Set<number>>();
  await findPaths(fsx, new Set([ino]), { foregroundWaiting: options.foregroundWaiting, entryTypes });
  const said = [...(entryTypes.get(ino) ?? [])];
  if (said.length !== 1) return null; // no entry, or entries that disagree: nothing to go by
  const want = said[0]! << 12;
  return want !== type && forksFitType(fsx.fs, inode, want) ? want : null;
}

/** The one transaction: every fix of one inode core (`typeFromEntries`: the type its entries give it, or null). */
function repairCore(fsx: Rmapfs, ino: number, typeFromEntries: number | null): { changes: string[]; leftFor: Set<StructureName> } {
  const fs = fsx.fs;
  const leftFor = new Set<StructureName>();
  if (!inChunk(fsx, ino)) {
    throw new RmapfsError('EFSCORRUPTED', `inode ${ino} is in no inode chunk the inode btree and the rmap both know; left as it is`);
  }
  const changes = restoreInodeIdentity(fs, fsx.inodes, ino, leftFor);
  const inode = fsx.inodes.handle(ino);
  const free = freeInInodeBtree(fsx, ino);
  if (free === true) {
    // A free inode holds its identity only: junk left in it is wiped (its generation kept).
    const { buf, offset } = inode.dataFork();
    const base = offset - DATA_FORK_OFFSET;
    if (inode.mode === 0 && !isCleanFreeInode(buf.data, base)) {
      const gen = buf.data.readUInt32BE(base + OFF_I_GEN);
      formatFreeInode(buf.data, base, ino, fs.geo.uuid);
      buf.data.writeUInt32BE(gen, base + OFF_I_GEN);
      fs.cache.markDirty(buf);
      changes.push('free inode cleared of what it still held');
    }
    // In use though the inode btree calls it free: the inode btree's repair decides (from the inode cores).
    return { changes, leftFor };
  }
  // Before any per-type rule (and any per-type repairer: they follow in dependency order).
  if (typeFromEntries !== null && inode.mode !== 0 && (inode.mode & S_IFMT) !== typeFromEntries) {
    changes.push(`type ${typeName(inode.mode & S_IFMT)} -> ${typeName(typeFromEntries)} (from its directory entries)`);
    inode.mode = typeFromEntries | (inode.mode & 0o7777);
  }
  const type = inode.mode & S_IFMT;
  if (inode.mode === 0 || !FILE_TYPES.has(type)) {
    const guessed = guessType(fsx, inode);
    if (guessed === null) {
      // It holds no blocks: freeing it is its inode btree bit (and the slot formatted free).
      fsx.inodes.release(inode);
      return { changes: [...changes, `inode ${ino} cleared (mode ${inode.mode.toString(8)}, nothing in it says what it was)`], leftFor };
    }
    const perms = inode.mode === 0 ? (guessed === S_IFDIR ? 0o755 : 0o644) : inode.mode & 0o7777;
    changes.push(`mode ${inode.mode.toString(8)} -> ${(guessed | perms).toString(8)} (the file type from its forks)`);
    inode.mode = guessed | perms;
  }
  if ((inode.flags & ~KNOWN_FLAGS) !== 0) {
    changes.push(`flags ${inode.flags.toString(16)} -> ${(inode.flags & KNOWN_FLAGS).toString(16)}`);
    inode.flags = inode.flags & KNOWN_FLAGS;
  }
  const impossible = impossibleDataFork(fsx, inode);
  if (impossible !== null) {
    emptyDataFork(fsx, inode);
    changes.push(`data fork emptied (${impossible}); the block map is rebuilt from the rmap`);
    leftFor.add('bmap');
  }
  changes.push(...tidyAttrFork(fsx, inode, leftFor));
  if (inode.isDir && inode.size !== 0) {
    changes.push(`directory size ${inode.sizeText} -> 0`);
    inode.size = 0;
  }
  if (isSpecialFile(inode.mode & S_IFMT) && inode.size !== 0) {
    changes.push(`size ${inode.sizeText} -> 0 (a ${typeName(inode.mode & S_IFMT)} has no data)`);
    inode.size = 0;
  }
  // The counts, from forks that verify (the repair of a fork that does not sets them itself).
  const counts = leftFor.size === 0 ? countForks(fsx, inode, leftFor) : null;
  if (counts !== null) {
    if (inode.nblocks !== counts.blocks) {
      changes.push(`block count ${inode.nblocks} -> ${counts.blocks}`);
      inode.nblocks = counts.blocks;
    }
    if (counts.attrRecords !== null && inode.attrCount !== counts.attrRecords) {
      changes.push(`attribute count ${inode.attrCount} -> ${counts.attrRecords}`);
      inode.attrCount = counts.attrRecords;
    }
    // Blocks mapped past the end of a file, or a size past the largest file: the size is set to the
    // end of the last mapped block -- where in that block the file ended is not known (said so).
    const mappedEnd = counts.dataEnd * BLOCK_SIZE;
    if ((inode.mode & S_IFMT) === S_IFREG) {
      const past = mappedEnd > Math.ceil(inode.size / BLOCK_SIZE) * BLOCK_SIZE;
      if (past || inode.size > MAX_FILE_SIZE) {
        const why = past ? 'blocks were mapped past it' : 'past the largest file';
        changes.push(`size ${inode.sizeText} -> ${mappedEnd} (${why}; set to the end of the last mapped block: the exact end within it is lost)`);
        inode.size = mappedEnd;
      }
    }
  }
  return { changes, leftFor };
}

/**
 * Repairs inode ino's core online, in one transaction. The result's path is
 * the caller's to find (null here); `leftFor` names the structures of the
 * inode left for their own repairers.
 */
export async function repairInodeCore(fsx: Rmapfs, ino: number, options: FileRepairOptions = {}): Promise<FileRepairResult> {
  if (!fsx.fs.geo.isValidIno(ino)) throw new RmapfsError('EINVAL', `no inode ${ino}`);
  const fromEntries = await typeFromEntries(fsx, ino, options);
  const t0 = process.hrtime.bigint();
  const { changes, leftFor } = fsx.fs.run(() => repairCore(fsx, ino, fromEntries));
  const commitPauseMs = Number(process.hrtime.bigint() - t0) / 1e6;
  if (changes.length > 0) log('inode %d: core repaired: %s; pause %s ms', ino, changes.join('; '), commitPauseMs.toFixed(2));
  const result: FileRepairResult = { type: 'inode', ino, path: null, changes, commitPauseMs };
  if (leftFor.size > 0) result.leftFor = [...leftFor];
  return result;
}

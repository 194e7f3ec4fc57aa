/**
 * Directories: each is a btree of its entries (the generic engine, rooted in
 * the directory's inode, blocks owned by it), keyed by a hash of the name and
 * a collision index, so a lookup is O(log n) at any size.
 *
 * Entry (272 bytes): hash u32, collision index u16, file type u8, name length
 * u8, inode number u64, name (up to 255 bytes, zero padded).
 * Key (6 bytes): hash, collision index. ".." is an entry; "." is not stored.
 */
import { RmapfsError } from '../errors';
import { Btree } from '../btree/btree';
import type { BtreeOps } from '../btree/btree-ops';
import { hashKeyOps } from '../btree/btree-ops';
import { findHashedName, freeCollisionIndex, nameHash } from '../btree/hashed-names';
import { magicOf, readU64, u64Text, writeU64 } from '../io/meta-header';
import type { Allocator } from '../alloc/alloc';
import type { Geometry } from '../format/geometry';
import type { Inode } from '../inode/inode';
import { FORK_BTREE } from '../inode/inode-format';
import { ForkBtreeStorage } from '../inode/fork-btree';

export const DIRENT_SIZE = 272;
export const NAME_MAX = 255;
const OFF_HASH = 0;
const OFF_CIDX = 4;
const OFF_FTYPE = 6;
const OFF_NAMELEN = 7;
const OFF_INO = 8;
const OFF_NAME = 16;

/** File types in entries (as in dirent d_type). */
export const DT_UNKNOWN = 0;
export const DT_FIFO = 1;
export const DT_CHR = 2;
export const DT_DIR = 4;
export const DT_BLK = 6;
export const DT_REG = 8;
export const DT_LNK = 10;
export const DT_SOCK = 12;

export function dtypeOfMode(mode: number): number {
  return (mode >>> 12) & 0xf;
}

export const dirBtreeOps: BtreeOps = {
  name: 'dir',
  magic: magicOf('DIR3'),
  recSize: DIRENT_SIZE,
  ...hashKeyOps,
  checkRecord(rec, r) {
    const len = rec.readUInt8(r + OFF_NAMELEN);
    if (len === 0) return 'empty name';
    const name = rec.subarray(r + OFF_NAME, r + OFF_NAME + len);
    if (name.includes(0x2f) || name.includes(0)) return 'name holds "/" or NUL';
    if (nameHash(name) !== rec.readUInt32BE(r + OFF_HASH)) return `hash of "${name.toString()}" is wrong`;
    return null;
  },
  formatRecord(rec, r) {
    const e = decodeDirent(rec, r);
    return `${e.name.toString()} -> inode ${direntIno(e)} (type ${e.ftype})`;
  },
};

export interface Dirent {
  name: Buffer;
  ino: number;
  /** The inode number as exact text when it is above 2^53 (damage: `ino` is then rounded), else null. */
  inoExact: string | null;
  ftype: number;
  hash: number;
  cidx: number;
}

/** The readdir cookie of an entry (see Directory.forEachFrom). */
export function direntCookie(d: Dirent): number {
  return d.hash * 0x10000 + d.cidx + 3;
}

/** An entry's inode number for a report: exact even when damage put it above 2^53. */
export function direntIno(d: Dirent): string {
  return d.inoExact ?? String(d.ino);
}

export function decodeDirent(b: Buffer, off: number): Dirent {
  const len = b.readUInt8(off + OFF_NAMELEN);
  const ino = readU64(b, off + OFF_INO);
  return {
    name: Buffer.from(b.subarray(off + OFF_NAME, off + OFF_NAME + len)),
    ino,
    inoExact: Number.isSafeInteger(ino) ? null : u64Text(b, off + OFF_INO),
    ftype: b.readUInt8(off + OFF_FTYPE),
    hash: b.readUInt32BE(off + OFF_HASH),
    cidx: b.readUInt16BE(off + OFF_CIDX),
  };
}

export { nameHash };

function nameAt(block: Buffer, offset: number): Buffer {
  return block.subarray(offset + OFF_NAME, offset + OFF_NAME + block.readUInt8(offset + OFF_NAMELEN));
}

/** Checks a name for a directory entry: 1..255 bytes, no "/" or NUL, not "." or "..". */
export function checkName(name: Buffer): void {
  if (name.length > NAME_MAX) throw new RmapfsError('ENAMETOOLONG', `name of ${name.length} bytes (at most ${NAME_MAX})`);
  if (name.length === 0 || name.includes(0x2f) || name.includes(0)) throw new RmapfsError('EINVAL', 'bad file name');
  if (name.equals(DOT) || name.equals(DOTDOT)) throw new RmapfsError('EEXIST', `'${name.toString()}' always exists`);
}

const DOT = Buffer.from('.');
export const DOTDOT = Buffer.from('..');

export class Directory {
  readonly tree: Btree;
  private readonly rec = Buffer.alloc(DIRENT_SIZE);

  constructor(readonly inode: Inode, private readonly alloc: Allocator, geo: Geometry) {
    if (!inode.isDir || inode.format !== FORK_BTREE) throw inode.store.damaged(inode.ino, 'directory', `inode ${inode.ino} is not a directory`);
    this.tree = new Btree(dirBtreeOps, new ForkBtreeStorage(inode, 'data', alloc, geo));
  }

  /** Makes an empty directory's tree (with its ".." entry) in a fresh inode. */
  static init(inode: Inode, parentIno: number, alloc: Allocator, geo: Geometry): Directory {
    inode.format = FORK_BTREE;
    Btree.create(dirBtreeOps, new ForkBtreeStorage(inode, 'data', alloc, geo), geo.inoLocation(inode.ino).fsbno);
    const dir = new Directory(inode, alloc, geo);
    dir.insertEntry(DOTDOT, parentIno, DT_DIR);
    return dir;
  }

  /** Entries (without "." and ".."). */
  get count(): number {
    return this.inode.nextents - 1;
  }

  /** The entry for a name, positioned cursor and all; null when absent. */
  private find(name: Buffer): { dirent: Dirent; cur: ReturnType<Btree['cursor']> } | null {
    const cur = findHashedName(this.tree, name, nameAt);
    if (cur === null) return null;
    const { block, offset } = cur.recordAt();
    return { dirent: decodeDirent(block, offset), cur };
  }

  lookup(name: Buffer): Dirent | null {
    return this.find(name)?.dirent ?? null;
  }

  get parent(): number {
    const d = this.lookup(DOTDOT);
    if (d === null) throw this.inode.store.damaged(this.inode.ino, 'directory', `directory ${this.inode.ino} has no ".." entry`);
    return d.ino;
  }

  /** Adds an entry; EEXIST when the name is taken. */
  add(name: Buffer, ino: number, ftype: number): void {
    checkName(name);
    this.insertEntry(name, ino, ftype);
  }

  private insertEntry(name: Buffer, ino: number, ftype: number): void {
    if (this.find(name) !== null) throw new RmapfsError('EEXIST', `'${name.toString()}' exists`);
    const hash = nameHash(name);
    const cidx = freeCollisionIndex(this.tree, hash);
    if (cidx > 0xffff) throw new RmapfsError('ENOSPC', 'too many names with one hash in this directory');
    const r = this.rec;
    r.fill(0);
    r.writeUInt32BE(hash, OFF_HASH);
    r.writeUInt16BE(cidx, OFF_CIDX);
    r.writeUInt8(ftype, OFF_FTYPE);
    r.writeUInt8(name.length, OFF_NAMELEN);
    writeU64(r, OFF_INO, ino);
    name.copy(r, OFF_NAME);
    this.tree.insert(r);
    this.noteChange('add', name, ino, ftype);
  }

  /** Tells the directory entry hooks (repairs kept current while they run) of a change. */
  private noteChange(op: 'add' | 'remove', name: Buffer, ino: number, ftype: number): void {
    if (this.alloc.direntHooked) this.alloc.noteDirentUpdate({ op, dir: this.inode.ino, name: Buffer.from(name), ino, ftype });
  }

  /** Removes an entry and returns it; ENOENT when absent. */
  remove(name: Buffer): Dirent {
    const found = this.find(name);
    if (found === null) throw new RmapfsError('ENOENT', `'${name.toString()}' does not exist`);
    found.cur.delete();
    this.noteChange('remove', name, found.dirent.ino, found.dirent.ftype);
    return found.dirent;
  }

  /** Points an existing entry at another inode (rename over an existing name; ".." on a move). */
  replace(name: Buffer, ino: number, ftype: number): Dirent {
    const found = this.find(name);
    if (found === null) throw new RmapfsError('ENOENT', `'${name.toString()}' does not exist`);
    const { block, offset } = found.cur.recordAt();
    const r = Buffer.from(block.subarray(offset, offset + DIRENT_SIZE));
    writeU64(r, OFF_INO, ino);
    r.writeUInt8(ftype, OFF_FTYPE);
    found.cur.update(r);
    this.noteChange('remove', name, found.dirent.ino, found.dirent.ftype);
    this.noteChange('add', name, ino, ftype);
    return found.dirent;
  }

  /** Visits entries in hash order (not "."/".."); stop by returning false. */
  forEach(visit: (d: Dirent) => boolean | void): void {
    this.tree.forEach((b, off) => {
      const len = b.readUInt8(off + OFF_NAMELEN);
      if (len === 2 && b[off + OFF_NAME] === 0x2e && b[off + OFF_NAME + 1] === 0x2e) return true;
      return visit(decodeDirent(b, off));
    });
  }

  /**
   * Visits entries from a cookie on (0 = from the start). An entry's cookie is
   * its key (hash and collision index) plus 3, so it stays valid while other
   * entries come and go -- what readdir offsets need (0, 1 and 2 stay free for
   * the start, "." and "..").
   */
  forEachFrom(cookie: number, visit: (d: Dirent, next: number) => boolean | void): void {
    const key = Buffer.alloc(6);
    const at = Math.max(0, cookie - 3);
    key.writeUInt32BE(Math.floor(at / 0x10000) >>> 0, 0);
    key.writeUInt16BE(at % 0x10000, 4);
    const cur = this.tree.cursor();
    for (let ok = cur.lookup(key, 0, 'ge'); ok; ok = cur.increment()) {
      const { block, offset } = cur.recordAt();
      const d = decodeDirent(block, offset);
      if (d.name.equals(DOTDOT)) continue;
      if (visit(d, direntCookie(d) + 1) === false) return;
    }
  }

  isEmpty(): boolean {
    return this.count === 0;
  }

  /** Frees the directory's blocks (it must be empty). */
  destroy(): void {
    // Its ".." goes with it: the reference to the parent ends here.
    if (this.alloc.direntHooked) {
      const up = this.lookup(DOTDOT);
      if (up !== null) this.noteChange('remove', DOTDOT, up.ino, up.ftype);
    }
    this.tree.destroy();
    this.inode.dataRoot = 0;
    this.inode.dataHeight = 0;
    this.inode.nextents = 0;
  }
}

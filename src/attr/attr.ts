/**
 * Extended attributes: each inode's attributes are a btree in its attr fork
 * (the generic engine again), keyed by a hash of the full name
 * ("user.foo") and a collision index. Values up to 64 bytes sit in the
 * record; larger ones (up to 64 KiB) get blocks of their own, owned by the
 * inode in the rmap with the attr-fork flag, written in place before the
 * record that points at them is logged -- and never overwritten: a new value
 * gets new blocks, so a crash shows the old value or the new, never a mix.
 *
 * Record (340 bytes): hash u32, collision index u16, pad u8, name length u8,
 * value length u32, value block u32 (fsbno, 0 when inline), name (256 bytes),
 * inline value (64 bytes), value crc32c u32. Key (6 bytes): hash, collision
 * index. The value's crc makes a damaged length, block pointer or value
 * show: reads fail with EFSBADCRC, and check reports it.
 */
import { RmapfsError } from '../errors';
import { native } from '../native';
import { Btree } from '../btree/btree';
import type { BtreeOps } from '../btree/btree-ops';
import { hashKeyOps } from '../btree/btree-ops';
import { magicOf } from '../io/meta-header';
import type { Device } from '../io/device';
import type { Allocator } from '../alloc/alloc';
import type { Geometry } from '../format/geometry';
import { BLOCK_SIZE } from '../format/superblock';
import { RMAP_ATTR_FORK } from '../rmap/rmap-btree';
import type { Inode } from '../inode/inode';
import { ATTR_BTREE, ATTR_NONE } from '../inode/inode-format';
import { ForkBtreeStorage } from '../inode/fork-btree';
import { findHashedName, freeCollisionIndex, nameHash } from '../btree/hashed-names';

export const ATTR_REC_SIZE = 340;
export const ATTR_NAME_MAX = 255;
export const ATTR_VALUE_MAX = 65536;
export const ATTR_INLINE_MAX = 64;
const OFF_HASH = 0;
const OFF_CIDX = 4;
const OFF_NAMELEN = 7;
const OFF_VALUELEN = 8;
const OFF_VALUEBLOCK = 12;
const OFF_NAME = 16;
const OFF_INLINE = 272;
const OFF_VALUECRC = 336;

/** The crc32c a record keeps of its value. */
export function valueCrc(value: Buffer): number {
  return native.crc32c(value, 0, value.length, 0) >>> 0;
}

export const attrBtreeOps: BtreeOps = {
  name: 'attr',
  magic: magicOf('ATR3'),
  recSize: ATTR_REC_SIZE,
  ...hashKeyOps,
  checkRecord(rec, r) {
    const len = rec.readUInt8(r + OFF_NAMELEN);
    if (len === 0) return 'empty attribute name';
    const valueLen = rec.readUInt32BE(r + OFF_VALUELEN);
    if (valueLen > ATTR_VALUE_MAX) return `value of ${valueLen} bytes`;
    if ((valueLen > ATTR_INLINE_MAX) !== (rec.readUInt32BE(r + OFF_VALUEBLOCK) !== 0)) return 'value stored in the wrong place';
    const nameWrong = checkAttrName(rec, r);
    if (nameWrong !== null) return nameWrong;
    if (valueLen <= ATTR_INLINE_MAX && valueCrc(rec.subarray(r + OFF_INLINE, r + OFF_INLINE + valueLen)) !== rec.readUInt32BE(r + OFF_VALUECRC)) {
      return 'inline value does not match its crc';
    }
    return null;
  },
  formatRecord(rec, r) {
    const len = rec.readUInt8(r + OFF_NAMELEN);
    const vlen = rec.readUInt32BE(r + OFF_VALUELEN);
    const at = rec.readUInt32BE(r + OFF_VALUEBLOCK);
    return `${rec.subarray(r + OFF_NAME, r + OFF_NAME + len).toString()} = ${vlen} bytes${at !== 0 ? ` at block ${at}` : ''}`;
  },
};

/** What is wrong with the name of the record at rec[r] (empty, or not matching its hash), or null. */
export function checkAttrName(rec: Buffer, r: number): string | null {
  const len = rec.readUInt8(r + OFF_NAMELEN);
  if (len === 0) return 'empty attribute name';
  if (nameHash(rec.subarray(r + OFF_NAME, r + OFF_NAME + len)) !== rec.readUInt32BE(r + OFF_HASH)) return 'name hash is wrong';
  return null;
}

/** The inline value area of the record at b[off] (its first valueLen bytes are the value when it is inline). */
export function inlineValueArea(b: Buffer, off: number): Buffer {
  return b.subarray(off + OFF_INLINE, off + OFF_INLINE + ATTR_INLINE_MAX);
}

function nameAt(block: Buffer, offset: number): Buffer {
  return block.subarray(offset + OFF_NAME, offset + OFF_NAME + block.readUInt8(offset + OFF_NAMELEN));
}

/** Blocks a value of this length takes outside the record (0 when inline). */
export function valueBlocks(len: number): number {
  return len > ATTR_INLINE_MAX ? Math.ceil(len / BLOCK_SIZE) : 0;
}

export interface AttrEntry {
  name: Buffer;
  valueLen: number;
  /** fsbno of the value's blocks, 0 when inline. */
  valueBlock: number;
  /** crc32c of the value. */
  valueCrc: number;
}

/** The entry of the attribute record at b[off] (its inline value stays in the record). */
export function decodeAttrEntry(b: Buffer, off: number): AttrEntry {
  const len = b.readUInt8(off + OFF_NAMELEN);
  return {
    name: Buffer.from(b.subarray(off + OFF_NAME, off + OFF_NAME + len)),
    valueLen: b.readUInt32BE(off + OFF_VALUELEN),
    valueBlock: b.readUInt32BE(off + OFF_VALUEBLOCK),
    valueCrc: b.readUInt32BE(off + OFF_VALUECRC),
  };
}

/** Rewrites where the record at b[off] says its value is (a repair found it elsewhere by its crc). */
export function setValuePlace(b: Buffer, off: number, valueLen: number, valueBlock: number): void {
  b.writeUInt32BE(valueLen, off + OFF_VALUELEN);
  b.writeUInt32BE(valueBlock, off + OFF_VALUEBLOCK);
}

/** Sets the collision index of the record at b[off] (a rebuilt tree counts them afresh). */
export function setCollisionIndex(b: Buffer, off: number, cidx: number): void {
  b.writeUInt16BE(cidx, off + OFF_CIDX);
}

/** An out-of-line value as its blocks hold it (not checked: compare valueCrc with the entry's). */
export function readOutOfLineValue(device: Device, e: AttrEntry): Buffer {
  const out = Buffer.alloc(e.valueLen);
  device.read(e.valueBlock * BLOCK_SIZE, out, 0, e.valueLen);
  return out;
}

export interface AttrContext {
  device: Device;
  alloc: Allocator;
  geo: Geometry;
  noteDataWritten(): void;
}

export class AttrFork {
  /** The btree object for the fork's current root; see `tree`. */
  private treeObject: Btree | null = null;

  constructor(readonly inode: Inode, private readonly ctx: AttrContext) {
    void this.tree; // an unknown format is corruption at once
  }

  /**
   * The btree when the fork has one, else null: asked of the inode every time
   * (as BlockMap does), so no AttrFork goes on with a fork another one created
   * or destroyed meanwhile.
   */
  private get tree(): Btree | null {
    const format = this.inode.attrFormat;
    if (format === ATTR_NONE) {
      this.treeObject = null;
      return null;
    }
    if (format !== ATTR_BTREE) throw this.inode.store.damaged(this.inode.ino, 'xattr', `inode ${this.inode.ino}: unknown attr fork format ${format}`);
    return (this.treeObject ??= new Btree(attrBtreeOps, this.storage()));
  }

  private storage(): ForkBtreeStorage {
    return new ForkBtreeStorage(this.inode, 'attr', this.ctx.alloc, this.ctx.geo);
  }

  get btree(): Btree | null {
    return this.tree;
  }

  private find(name: Buffer): { cur: ReturnType<Btree['cursor']>; entry: AttrEntry; inline: Buffer } | null {
    const tree = this.tree;
    if (tree === null) return null;
    const cur = findHashedName(tree, name, nameAt);
    if (cur === null) return null;
    const { block, offset } = cur.recordAt();
    const valueLen = block.readUInt32BE(offset + OFF_VALUELEN);
    return {
      cur,
      entry: { name: Buffer.from(name), valueLen, valueBlock: block.readUInt32BE(offset + OFF_VALUEBLOCK),
        valueCrc: block.readUInt32BE(offset + OFF_VALUECRC) },
      inline: Buffer.from(block.subarray(offset + OFF_INLINE, offset + OFF_INLINE + Math.min(valueLen, ATTR_INLINE_MAX))),
    };
  }

  get(name: Buffer): Buffer | null {
    const found = this.find(name);
    if (found === null) return null;
    return this.value(found.entry, found.inline);
  }

  /** An entry's value (from its record, or its blocks), checked against the crc the record keeps. */
  value(entry: AttrEntry, inline?: Buffer): Buffer {
    let out: Buffer;
    if (entry.valueBlock === 0) {
      out = inline ?? this.get(entry.name) ?? Buffer.alloc(0);
    } else {
      out = readOutOfLineValue(this.ctx.device, entry);
    }
    if (valueCrc(out) !== entry.valueCrc) {
      throw this.inode.store.damaged(this.inode.ino, 'xattr', `inode ${this.inode.ino}: attribute '${entry.name.toString()}': the value (${entry.valueLen} bytes`
        + `${entry.valueBlock !== 0 ? ` at block ${entry.valueBlock}` : ''}) does not match its crc`, 'EFSBADCRC');
    }
    return out;
  }

  list(): AttrEntry[] {
    const out: AttrEntry[] = [];
    this.tree?.forEach((b, off) => { out.push(decodeAttrEntry(b, off)); });
    return out;
  }

  /** Sets a value; `mode` 'create' fails with EEXIST, 'replace' with ENODATA. */
  set(name: Buffer, value: Buffer, mode: 'any' | 'create' | 'replace' = 'any'): void {
    if (name.length === 0 || name.length > ATTR_NAME_MAX) {
      throw new RmapfsError('ERANGE', `attribute name of ${name.length} bytes (1..${ATTR_NAME_MAX})`);
    }
    if (value.length > ATTR_VALUE_MAX) throw new RmapfsError('E2BIG', `attribute value of ${value.length} bytes (at most ${ATTR_VALUE_MAX})`);
    const existing = this.find(name);
    if (existing !== null && mode === 'create') throw new RmapfsError('EEXIST', `attribute '${name.toString()}' exists`);
    if (existing === null && mode === 'replace') throw new RmapfsError('ENODATA', `no attribute '${name.toString()}'`);
    // The new value first, in blocks of its own; then the record; then the old value's blocks go.
    let valueBlock = 0;
    const nblocks = valueBlocks(value.length);
    if (nblocks > 0) {
      const got = this.ctx.alloc.alloc({
        owner: this.inode.ino, flags: RMAP_ATTR_FORK, minLen: nblocks, maxLen: nblocks,
        goal: this.ctx.geo.inoLocation(this.inode.ino).fsbno,
      });
      valueBlock = got.fsbno;
      const padded = Buffer.alloc(nblocks * BLOCK_SIZE);
      value.copy(padded);
      this.ctx.device.write(valueBlock * BLOCK_SIZE, padded, 0, padded.length);
      this.ctx.noteDataWritten();
      this.inode.nblocks = this.inode.nblocks + nblocks;
    }
    if (existing !== null) {
      existing.cur.delete();
      this.freeValue(existing.entry);
    }
    let tree = this.tree;
    if (tree === null) {
      this.inode.attrFormat = ATTR_BTREE;
      tree = Btree.create(attrBtreeOps, this.storage(), this.ctx.geo.inoLocation(this.inode.ino).fsbno);
      this.treeObject = tree;
    }
    const rec = Buffer.alloc(ATTR_REC_SIZE);
    const hash = nameHash(name);
    const cidx = freeCollisionIndex(tree, hash);
    rec.writeUInt32BE(hash, OFF_HASH);
    rec.writeUInt16BE(cidx, OFF_CIDX);
    rec.writeUInt8(name.length, OFF_NAMELEN);
    rec.writeUInt32BE(value.length, OFF_VALUELEN);
    rec.writeUInt32BE(valueBlock, OFF_VALUEBLOCK);
    name.copy(rec, OFF_NAME);
    if (nblocks === 0) value.copy(rec, OFF_INLINE);
    rec.writeUInt32BE(valueCrc(value), OFF_VALUECRC);
    tree.insert(rec);
    this.inode.touch('ctime');
  }

  remove(name: Buffer): void {
    const found = this.find(name);
    if (found === null) throw new RmapfsError('ENODATA', `no attribute '${name.toString()}'`);
    found.cur.delete();
    this.freeValue(found.entry);
    const tree = this.tree;
    if (tree !== null && tree.count() === 0) this.destroyTree();
    this.inode.touch('ctime');
  }

  /** Frees every value and the btree (the inode is going away). */
  clear(): void {
    if (this.tree === null) return;
    for (const e of this.list()) this.freeValue(e);
    this.destroyTree();
  }

  private freeValue(e: AttrEntry): void {
    if (e.valueBlock === 0) return;
    const n = valueBlocks(e.valueLen);
    this.ctx.alloc.free(e.valueBlock, n, this.inode.ino, 0, RMAP_ATTR_FORK);
    this.inode.nblocks = this.inode.nblocks - n;
  }

  private destroyTree(): void {
    this.tree!.destroy();
    this.treeObject = null;
    this.inode.attrFormat = ATTR_NONE;
    this.inode.attrRoot = 0;
    this.inode.attrHeight = 0;
    this.inode.attrCount = 0;
  }
}

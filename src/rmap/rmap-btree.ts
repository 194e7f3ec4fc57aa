/**
 * The reverse-mapping btree type: one record per extent of allocated space,
 * saying who owns it. The same ops table serves the on-disk rmap btree of an
 * AG and the in-memory one online repair builds in an xfile.
 *
 * Record (24 bytes, big-endian):
 *   0  u32 startblock   AG block number of the extent
 *   4  u32 blockcount
 *   8  u64 owner        inode number, or a special metadata owner
 *  16  u64 offset       file offset in blocks; the top three bits are flags:
 *                       bit 63 attr fork, bit 62 block-map btree block, bit 61 unwritten
 * Key (20 bytes): startblock u32, owner u64, offset u64 (flags included,
 * except "unwritten", which does not change who owns a block).
 */
import type { BtreeOps } from '../btree/btree-ops';
import { magicOf } from '../btree/btree-block';
import { isInodeOwner, ownerName, OWN_INODES, OWN_NULL } from '../format/owners';
import { u64Text } from '../io/meta-header';

export const RMAP_REC_SIZE = 24;
export const RMAP_KEY_SIZE = 20;

/** Flags, as they sit in the top bits of the offset's high word. */
export const RMAP_ATTR_FORK = 0x80000000;
export const RMAP_BMBT_BLOCK = 0x40000000;
export const RMAP_UNWRITTEN = 0x20000000;
const FLAG_MASK = 0xe0000000;
/** The offset's own bits in the high word (the rest are flags). */
const OFFSET_HI_MASK = 0x1fffffff;

const TWO32 = 0x100000000;

export interface RmapRecord {
  startblock: number;
  blockcount: number;
  owner: number;
  offset: number;
  /** Any of RMAP_ATTR_FORK | RMAP_BMBT_BLOCK | RMAP_UNWRITTEN. */
  flags: number;
  /** The owner's exact decimal text, set by decodeRmap only when it is above 2^53 (`owner` rounds it): for reports. */
  ownerExact?: string;
}

export function encodeRmap(r: RmapRecord, b: Buffer, off: number): void {
  b.writeUInt32BE(r.startblock >>> 0, off);
  b.writeUInt32BE(r.blockcount >>> 0, off + 4);
  b.writeUInt32BE(Math.floor(r.owner / TWO32) >>> 0, off + 8);
  b.writeUInt32BE(r.owner >>> 0, off + 12);
  b.writeUInt32BE(((r.flags & FLAG_MASK) | (Math.floor(r.offset / TWO32) & OFFSET_HI_MASK)) >>> 0, off + 16);
  b.writeUInt32BE(r.offset >>> 0, off + 20);
}

/** The owner of the record at b[off] (u64), without decoding the rest. */
export function decodeRmapOwner(b: Buffer, off: number): number {
  return b.readUInt32BE(off + 8) * TWO32 + b.readUInt32BE(off + 12);
}

export function decodeRmap(b: Buffer, off: number): RmapRecord {
  const offHi = b.readUInt32BE(off + 16);
  const r: RmapRecord = {
    startblock: b.readUInt32BE(off),
    blockcount: b.readUInt32BE(off + 4),
    owner: decodeRmapOwner(b, off),
    offset: (offHi & OFFSET_HI_MASK) * TWO32 + b.readUInt32BE(off + 20),
    flags: (offHi & FLAG_MASK) >>> 0,
  };
  if (!Number.isSafeInteger(r.owner)) r.ownerExact = u64Text(b, off + 8);
  return r;
}

export function encodeRmapKey(startblock: number, owner: number, offset: number, flags: number, b: Buffer, off = 0): void {
  b.writeUInt32BE(startblock >>> 0, off);
  b.writeUInt32BE(Math.floor(owner / TWO32) >>> 0, off + 4);
  b.writeUInt32BE(owner >>> 0, off + 8);
  b.writeUInt32BE((((flags & ~RMAP_UNWRITTEN) & FLAG_MASK) | (Math.floor(offset / TWO32) & OFFSET_HI_MASK)) >>> 0, off + 12);
  b.writeUInt32BE(offset >>> 0, off + 16);
}

function cmpU32(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export const rmapBtreeOps: BtreeOps = {
  name: 'rmap',
  magic: magicOf('RMB3'),
  recSize: RMAP_REC_SIZE,
  keySize: RMAP_KEY_SIZE,

  keyFromRec(rec: Buffer, r: number, key: Buffer, k: number): void {
    key.writeUInt32BE(rec.readUInt32BE(r), k);
    key.writeUInt32BE(rec.readUInt32BE(r + 8), k + 4);
    key.writeUInt32BE(rec.readUInt32BE(r + 12), k + 8);
    key.writeUInt32BE((rec.readUInt32BE(r + 16) & ~RMAP_UNWRITTEN) >>> 0, k + 12);
    key.writeUInt32BE(rec.readUInt32BE(r + 20), k + 16);
  },

  compareKeys(a: Buffer, ao: number, b: Buffer, bo: number): number {
    return cmpU32(a.readUInt32BE(ao), b.readUInt32BE(bo))
      || cmpU32(a.readUInt32BE(ao + 4), b.readUInt32BE(bo + 4))
      || cmpU32(a.readUInt32BE(ao + 8), b.readUInt32BE(bo + 8))
      || cmpU32(a.readUInt32BE(ao + 12), b.readUInt32BE(bo + 12))
      || cmpU32(a.readUInt32BE(ao + 16), b.readUInt32BE(bo + 16));
  },

  compareRecToKey(rec: Buffer, r: number, key: Buffer, k: number): number {
    return cmpU32(rec.readUInt32BE(r), key.readUInt32BE(k))
      || cmpU32(rec.readUInt32BE(r + 8), key.readUInt32BE(k + 4))
      || cmpU32(rec.readUInt32BE(r + 12), key.readUInt32BE(k + 8))
      || cmpU32((rec.readUInt32BE(r + 16) & ~RMAP_UNWRITTEN) >>> 0, key.readUInt32BE(k + 12))
      || cmpU32(rec.readUInt32BE(r + 20), key.readUInt32BE(k + 16));
  },

  compareRecs(a: Buffer, ao: number, b: Buffer, bo: number): number {
    return cmpU32(a.readUInt32BE(ao), b.readUInt32BE(bo))
      || cmpU32(a.readUInt32BE(ao + 8), b.readUInt32BE(bo + 8))
      || cmpU32(a.readUInt32BE(ao + 12), b.readUInt32BE(bo + 12))
      || cmpU32((a.readUInt32BE(ao + 16) & ~RMAP_UNWRITTEN) >>> 0, (b.readUInt32BE(bo + 16) & ~RMAP_UNWRITTEN) >>> 0)
      || cmpU32(a.readUInt32BE(ao + 20), b.readUInt32BE(bo + 20));
  },

  checkRecord(rec: Buffer, r: number): string | null {
    const start = rec.readUInt32BE(r);
    const count = rec.readUInt32BE(r + 4);
    if (count === 0) return 'zero-length extent';
    if (start + count > 0xffffffff) return `extent ${start}+${count} wraps past the end of the AG`;
    // Who owns it and how must make sense: metadata has no file offset and no flags; a block-map
    // btree block has no offset either; unwritten is for file data only.
    const m = decodeRmap(rec, r);
    if (!isInodeOwner(m.owner)) {
      if (m.owner === OWN_NULL || m.owner > OWN_INODES) return `unknown owner ${m.owner}`;
      if (m.offset !== 0 || m.flags !== 0) return `${ownerName(m.owner)} metadata with offset ${m.offset} and flags 0x${m.flags.toString(16)}`;
    } else if (m.flags & RMAP_BMBT_BLOCK) {
      if (m.offset !== 0 || (m.flags & RMAP_UNWRITTEN)) return `block-map btree block with offset ${m.offset} and flags 0x${m.flags.toString(16)}`;
    } else if ((m.flags & RMAP_UNWRITTEN) && (m.flags & RMAP_ATTR_FORK)) {
      return 'unwritten extent in an attribute fork';
    }
    return null;
  },

  formatRecord(rec: Buffer, r: number): string {
    const m = decodeRmap(rec, r);
    const flags = [m.flags & RMAP_ATTR_FORK ? 'attr' : '', m.flags & RMAP_BMBT_BLOCK ? 'bmbt' : '',
      m.flags & RMAP_UNWRITTEN ? 'unwritten' : ''].filter(Boolean).join(',');
    return `[${m.startblock}+${m.blockcount}] owner ${m.ownerExact ?? m.owner} offset ${m.offset}${flags ? ` (${flags})` : ''}`;
  },
};

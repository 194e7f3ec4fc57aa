/**
 * The inode btree type: one record per inode chunk of an AG, saying which of
 * its inodes are free. Chunks are allocated on demand (no inode table), so
 * this tree is how the filesystem finds every inode there is.
 *
 * Record (16 bytes): startino u32 (AG inode number of the chunk's first
 * inode), freecount u32, freemask u64 (bit i set = inode startino+i free).
 * Key: startino.
 */
import type { BtreeOps } from '../btree/btree-ops';
import { u32KeyOps } from '../btree/btree-ops';
import { magicOf } from '../io/meta-header';

export const INOBT_REC_SIZE = 16;
export const INODES_PER_CHUNK = 64;

export interface InobtRecord {
  startino: number;
  freecount: number;
  /** As two u32 halves: bit i of the chunk is bit i%32 of (i < 32 ? lo : hi). */
  freeLo: number;
  freeHi: number;
}

export function encodeInobt(r: InobtRecord, b: Buffer, off = 0): void {
  b.writeUInt32BE(r.startino >>> 0, off);
  b.writeUInt32BE(r.freecount >>> 0, off + 4);
  b.writeUInt32BE(r.freeHi >>> 0, off + 8);
  b.writeUInt32BE(r.freeLo >>> 0, off + 12);
}

export function decodeInobt(b: Buffer, off: number): InobtRecord {
  return { startino: b.readUInt32BE(off), freecount: b.readUInt32BE(off + 4), freeHi: b.readUInt32BE(off + 8), freeLo: b.readUInt32BE(off + 12) };
}

export function isInodeFree(r: InobtRecord, i: number): boolean {
  return i < 32 ? ((r.freeLo >>> i) & 1) === 1 : ((r.freeHi >>> (i - 32)) & 1) === 1;
}

export function setInodeFree(r: InobtRecord, i: number, free: boolean): void {
  if (i < 32) r.freeLo = (free ? r.freeLo | (1 << i) : r.freeLo & ~(1 << i)) >>> 0;
  else r.freeHi = (free ? r.freeHi | (1 << (i - 32)) : r.freeHi & ~(1 << (i - 32))) >>> 0;
}

function popcount(x: number): number {
  let n = 0;
  for (let v = x >>> 0; v !== 0; v &= v - 1) n++;
  return n;
}

export const inoBtreeOps: BtreeOps = {
  name: 'inobt',
  magic: magicOf('IAB3'),
  recSize: INOBT_REC_SIZE,
  ...u32KeyOps(0),
  checkRecord(rec, r) {
    const x = decodeInobt(rec, r);
    if (x.startino % INODES_PER_CHUNK !== 0) return `chunk start ${x.startino} is not aligned to ${INODES_PER_CHUNK}`;
    if (popcount(x.freeLo) + popcount(x.freeHi) !== x.freecount) return `free count ${x.freecount} disagrees with the free mask`;
    return null;
  },
  formatRecord(rec, r) {
    const x = decodeInobt(rec, r);
    return `chunk ${x.startino} free ${x.freecount} mask ${x.freeHi.toString(16).padStart(8, '0')}${x.freeLo.toString(16).padStart(8, '0')}`;
  },
};

/**
 * The free-space btree types: every free extent of an AG is one record in
 * both trees -- by block number (bnobt, for finding neighbours and space
 * near a goal) and by length then block number (cntbt, for best fit).
 *
 * Record (8 bytes): startblock u32, blockcount u32 (AG-relative).
 * bnobt key: startblock.  cntbt key: blockcount, startblock.
 */
import type { BtreeOps } from '../btree/btree-ops';
import { cmpU32, u32KeyOps } from '../btree/btree-ops';
import { magicOf } from '../io/meta-header';

export const ALLOC_REC_SIZE = 8;

export interface FreeExtent {
  startblock: number;
  blockcount: number;
}

export function encodeFreeExtent(startblock: number, blockcount: number, b: Buffer, off = 0): void {
  b.writeUInt32BE(startblock >>> 0, off);
  b.writeUInt32BE(blockcount >>> 0, off + 4);
}

export function decodeFreeExtent(b: Buffer, off: number): FreeExtent {
  return { startblock: b.readUInt32BE(off), blockcount: b.readUInt32BE(off + 4) };
}


function checkFreeRecord(rec: Buffer, r: number): string | null {
  const start = rec.readUInt32BE(r);
  const count = rec.readUInt32BE(r + 4);
  if (count === 0) return 'zero-length free extent';
  if (start + count > 0xffffffff) return `free extent ${start}+${count} wraps`;
  return null;
}

function formatFreeRecord(rec: Buffer, r: number): string {
  return `[${rec.readUInt32BE(r)}+${rec.readUInt32BE(r + 4)}]`;
}

export const bnoBtreeOps: BtreeOps = {
  name: 'bnobt',
  magic: magicOf('ABB3'),
  recSize: ALLOC_REC_SIZE,
  ...u32KeyOps(0),
  checkRecord: checkFreeRecord,
  formatRecord: formatFreeRecord,
};

export const cntBtreeOps: BtreeOps = {
  name: 'cntbt',
  magic: magicOf('ABC3'),
  recSize: ALLOC_REC_SIZE,
  keySize: 8,
  keyFromRec: (rec, r, key, k) => {
    key.writeUInt32BE(rec.readUInt32BE(r + 4), k);
    key.writeUInt32BE(rec.readUInt32BE(r), k + 4);
  },
  compareKeys: (a, ao, b, bo) => cmpU32(a.readUInt32BE(ao), b.readUInt32BE(bo)) || cmpU32(a.readUInt32BE(ao + 4), b.readUInt32BE(bo + 4)),
  compareRecToKey: (rec, r, key, k) => cmpU32(rec.readUInt32BE(r + 4), key.readUInt32BE(k)) || cmpU32(rec.readUInt32BE(r), key.readUInt32BE(k + 4)),
  checkRecord: checkFreeRecord,
  formatRecord: formatFreeRecord,
};

/** The bnobt key of an extent. */
export function bnoKey(startblock: number, key: Buffer): Buffer {
  key.writeUInt32BE(startblock >>> 0, 0);
  return key;
}

/** The cntbt key of an extent. */
export function cntKey(blockcount: number, startblock: number, key: Buffer): Buffer {
  key.writeUInt32BE(blockcount >>> 0, 0);
  key.writeUInt32BE(startblock >>> 0, 4);
  return key;
}

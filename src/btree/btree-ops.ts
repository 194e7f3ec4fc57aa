/**
 * What makes a btree *type*: the layout and ordering of its records and keys.
 * The generic engine (btree.ts) knows nothing else about a record; each
 * structure (rmap, free space by block, free space by size, inodes, block
 * maps) is one small table of these operations.
 *
 * Where the blocks live -- which target, how a pointer becomes a block
 * number, how blocks are allocated and freed, where the root is kept -- is
 * the *storage* (BtreeStorage), because the same type lives on two targets:
 * the rmap btree on the device, and the repair's copy of it in an xfile.
 */
import type { BufCache } from '../io/buf-cache';
import type { RmapfsError } from '../errors';

export interface BtreeOps {
  /** For messages and logs: "rmap", "bnobt", ... */
  readonly name: string;
  /** Block magic number (ASCII, big-endian u32). */
  readonly magic: number;
  readonly recSize: number;
  readonly keySize: number;
  /**
   * Caps on records per block, for tests that want deep trees from few
   * records. Production types leave these unset: the block size decides.
   */
  readonly maxLeafRecs?: number;
  readonly maxNodeRecs?: number;
  /** Writes the key of the record at rec[recOff] into key[keyOff]. */
  keyFromRec(rec: Buffer, recOff: number, key: Buffer, keyOff: number): void;
  /** <0, 0, >0 as key a sorts before, with, after key b. */
  compareKeys(a: Buffer, aOff: number, b: Buffer, bOff: number): number;
  /** compareKeys(keyFromRec(rec), key), without materialising the record's key. */
  compareRecToKey(rec: Buffer, recOff: number, key: Buffer, keyOff: number): number;
  /**
   * Optional: compareKeys(keyFromRec(a), keyFromRec(b)) straight from two records. The bulk loader
   * checks the order of every record with it, when present, instead of building each key.
   */
  compareRecs?(a: Buffer, aOff: number, b: Buffer, bOff: number): number;
  /** A record-level sanity check for the verifier: a message, or null when fine. */
  checkRecord?(rec: Buffer, recOff: number): string | null;
  /** One record as text, for verifier messages and `db`. */
  formatRecord?(rec: Buffer, recOff: number): string;
}

export interface BtreeRootInfo {
  /** Pointer to the root block. */
  ptr: number;
  /** Levels in the tree: 1 when the root is a leaf. */
  height: number;
}

/**
 * Where one btree's blocks live. Pointers stored in blocks are storage-relative
 * (AG block numbers on the device, page numbers in an xfile); `bnoOf` turns one
 * into a block number of the cache's target.
 */
export interface BtreeStorage {
  readonly cache: BufCache;
  /** Filesystem (or xfile) UUID stamped into every block header. */
  readonly uuid: Buffer;
  /** Owner stamped into every block header (AG number, inode number, 0 for an xfile). */
  readonly owner: number;
  bnoOf(ptr: number): number;
  isValidPtr(ptr: number): boolean;
  /** How many blocks the storage can hold now: bounds walks of a possibly looping corrupt tree. */
  blockLimit(): number;
  /** A free block, preferably near `hint`; throws RmapfsError ENOSPC when there is none. */
  allocBlock(hint: number): number;
  freeBlock(ptr: number): void;
  getRoot(): BtreeRootInfo;
  setRoot(root: BtreeRootInfo): void;
  /** Told of every record inserted (+1) or deleted (-1), for storages that keep a count. */
  adjustRecords?(delta: number): void;
  /**
   * Told when a block of the tree fails its verifier or the engine's own
   * checks (before the error is thrown): where health tracking marks the
   * tree sick, as XFS's btree code does.
   */
  noteCorruption?(error: RmapfsError): void;
}

/** The null pointer (no sibling, no block). */
export const NULL_PTR = 0xffffffff;

/** Three-way comparison of two unsigned numbers. */
export function cmpU32(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The key half of a btree type whose key is one big-endian u32 at `recOffset` in the record. */
export function u32KeyOps(recOffset: number): Pick<BtreeOps, 'keySize' | 'keyFromRec' | 'compareKeys' | 'compareRecToKey'> {
  return {
    keySize: 4,
    keyFromRec: (rec, r, key, k) => { key.writeUInt32BE(rec.readUInt32BE(r + recOffset), k); },
    compareKeys: (a, ao, b, bo) => cmpU32(a.readUInt32BE(ao), b.readUInt32BE(bo)),
    compareRecToKey: (rec, r, key, k) => cmpU32(rec.readUInt32BE(r + recOffset), key.readUInt32BE(k)),
  };
}

/**
 * The key half of a btree type keyed by a name hash (u32 at 0) and a
 * collision index (u16 at 4): directories and extended attributes.
 */
export const hashKeyOps: Pick<BtreeOps, 'keySize' | 'keyFromRec' | 'compareKeys' | 'compareRecToKey' | 'compareRecs'> = {
  keySize: 6,
  keyFromRec: (rec, r, key, k) => {
    key.writeUInt32BE(rec.readUInt32BE(r), k);
    key.writeUInt16BE(rec.readUInt16BE(r + 4), k + 4);
  },
  compareKeys: (a, ao, b, bo) => cmpU32(a.readUInt32BE(ao), b.readUInt32BE(bo)) || cmpU32(a.readUInt16BE(ao + 4), b.readUInt16BE(bo + 4)),
  compareRecToKey: (rec, r, key, k) => cmpU32(rec.readUInt32BE(r), key.readUInt32BE(k))
    || cmpU32(rec.readUInt16BE(r + 4), key.readUInt16BE(k + 4)),
  // The bulk loader orders a rebuilt directory's records with this (no key built per record).
  compareRecs: (a, ao, b, bo) => cmpU32(a.readUInt32BE(ao), b.readUInt32BE(bo)) || cmpU32(a.readUInt16BE(ao + 4), b.readUInt16BE(bo + 4)),
};

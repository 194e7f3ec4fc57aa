/**
 * Lookups in btrees keyed by a name's hash and a collision index (hashKeyOps):
 * directories and extended attributes. Names that hash alike sit next to
 * each other with indexes 0, 1, 2...; a lookup walks that run comparing names.
 */
import { native } from '../native';
import type { Btree, BtreeCursor } from './btree';

/** The hash a name is filed under: crc32c of its bytes. */
export function nameHash(name: Buffer): number {
  return native.crc32c(name, 0, name.length, 0);
}

const key = Buffer.alloc(6);

/** Positions a cursor on the first record with this hash; null when there is none. */
function firstWithHash(tree: Btree, hash: number): BtreeCursor | null {
  key.writeUInt32BE(hash, 0);
  key.writeUInt16BE(0, 4);
  const cur = tree.cursor();
  return cur.lookup(key, 0, 'ge') ? cur : null;
}

/**
 * The cursor on the record holding `name` (nameOf reads a record's name in
 * place), or null when the tree has none.
 */
export function findHashedName(tree: Btree, name: Buffer,
  nameOf: (block: Buffer, offset: number) => Buffer): BtreeCursor | null {
  const hash = nameHash(name);
  const cur = firstWithHash(tree, hash);
  for (let ok = cur !== null; ok; ok = cur!.increment()) {
    const { block, offset } = cur!.recordAt();
    if (block.readUInt32BE(offset) !== hash) break;
    if (nameOf(block, offset).equals(name)) return cur;
  }
  return null;
}

/** The lowest collision index not yet used for this hash. */
export function freeCollisionIndex(tree: Btree, hash: number): number {
  let cidx = 0;
  const cur = firstWithHash(tree, hash);
  for (let ok = cur !== null; ok; ok = cur!.increment()) {
    const { block, offset } = cur!.recordAt();
    if (block.readUInt32BE(offset) !== hash || block.readUInt16BE(offset + 4) !== cidx) break;
    cidx++;
  }
  return cidx;
}

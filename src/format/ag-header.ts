/**
 * The AG header: block 1 of every allocation group. It holds everything the
 * AG's own metadata hangs from -- the root, height, block count and record
 * count of each of its four btrees, the free-space totals, the inode counts,
 * and the AG free list (AGFL): a small stock of free blocks the free-space
 * and rmap btrees draw on when they split, so that allocating space never has
 * to allocate space first. Each AG can thus be checked and repaired alone.
 */
import { RmapfsError } from '../errors';
import type { BufOps } from '../io/buf-cache';
import { META_HDR_SIZE, magicOf, metaBufOps } from '../io/meta-header';
import type { Field } from './fields';
import { OWN_FS } from './owners';

export const AGH_MAGIC = magicOf('RMAG');
/** Block 0 of an AG is a superblock (copy), block 1 the AG header. */
export const SB_AGBNO = 0;
export const AGH_AGBNO = 1;

/** The AG's btrees, in the order their slots sit in the header. */
export const AG_BTREES = ['bno', 'cnt', 'rmap', 'ino'] as const;
export type AgBtreeName = (typeof AG_BTREES)[number];

const SLOTS = META_HDR_SIZE + 16; // after agno, agBlocks and 8 reserved bytes
const SLOT_SIZE = 16;
export const OFF_AGNO = 4;
export const OFF_AG_BLOCKS = 8;
const OFF_COUNTS = SLOTS + AG_BTREES.length * SLOT_SIZE;
export const OFF_FREE_BLOCKS = OFF_COUNTS;
export const OFF_LONGEST = OFF_COUNTS + 4;
export const OFF_FREE_EXTENTS = OFF_COUNTS + 8;
export const OFF_INODE_COUNT = OFF_COUNTS + 12;
export const OFF_FREE_INODES = OFF_COUNTS + 16;
export const OFF_AGFL_COUNT = OFF_COUNTS + 20;
export const OFF_AGFL = OFF_COUNTS + 24;
/** Blocks the AGFL can hold. */
export const AGFL_SIZE = 64;

export function slotOffset(tree: AgBtreeName): number {
  return SLOTS + AG_BTREES.indexOf(tree) * SLOT_SIZE;
}

/** Byte offsets within a btree slot. */
export const SLOT_ROOT = 0;
export const SLOT_HEIGHT = 4;
export const SLOT_BLOCKS = 8;
export const SLOT_RECORDS = 12;

export const AG_HEADER_FIELDS: readonly Field[] = [
  { name: 'magic', offset: 0, type: 'u32' },
  { name: 'agno', offset: OFF_AGNO, type: 'u32' },
  { name: 'agBlocks', offset: OFF_AG_BLOCKS, type: 'u32' },
  { name: 'blkno', offset: 16, type: 'u64' },
  { name: 'lsn', offset: 24, type: 'u64' },
  { name: 'uuid', offset: 32, type: 'uuid' },
  { name: 'owner', offset: 48, type: 'u64' },
  { name: 'crc', offset: 56, type: 'u32' },
  ...AG_BTREES.flatMap((t): Field[] => [
    { name: `${t}Root`, offset: slotOffset(t) + SLOT_ROOT, type: 'u32' },
    { name: `${t}Height`, offset: slotOffset(t) + SLOT_HEIGHT, type: 'u32' },
    { name: `${t}Blocks`, offset: slotOffset(t) + SLOT_BLOCKS, type: 'u32' },
    { name: `${t}Records`, offset: slotOffset(t) + SLOT_RECORDS, type: 'u32' },
  ]),
  { name: 'freeBlocks', offset: OFF_FREE_BLOCKS, type: 'u32' },
  { name: 'longest', offset: OFF_LONGEST, type: 'u32' },
  { name: 'freeExtents', offset: OFF_FREE_EXTENTS, type: 'u32' },
  { name: 'inodeCount', offset: OFF_INODE_COUNT, type: 'u32' },
  { name: 'freeInodes', offset: OFF_FREE_INODES, type: 'u32' },
  { name: 'agflCount', offset: OFF_AGFL_COUNT, type: 'u32' },
];

/** Buffer ops for AG agno's header (geometry checks beyond the common header). */
export function agHeaderBufOps(uuid: Buffer, agno: number, agBlocks: number): BufOps {
  return metaBufOps({ what: `AG ${agno} header`, magic: AGH_MAGIC, uuid, owner: OWN_FS, checksummed: true }, (buf) => {
    const b = buf.data;
    const bad = (what: string): never => {
      throw new RmapfsError('EFSCORRUPTED', `AG ${agno} header block ${buf.bno}: ${what}`);
    };
    if (b.readUInt32BE(OFF_AGNO) !== agno) bad(`says it is AG ${b.readUInt32BE(OFF_AGNO)}`);
    if (b.readUInt32BE(OFF_AG_BLOCKS) !== agBlocks) bad(`length ${b.readUInt32BE(OFF_AG_BLOCKS)}, want ${agBlocks}`);
    if (b.readUInt32BE(OFF_AGFL_COUNT) > AGFL_SIZE) bad(`free list count ${b.readUInt32BE(OFF_AGFL_COUNT)} > ${AGFL_SIZE}`);
    for (const t of AG_BTREES) {
      const root = b.readUInt32BE(slotOffset(t) + SLOT_ROOT);
      const height = b.readUInt32BE(slotOffset(t) + SLOT_HEIGHT);
      // A bad rmap root is the rmap btree's damage, not the header's: online repair rebuilds that
      // tree without reading the old one, but only from a header it can read. The btree refuses
      // the pointer itself (isValidPtr) wherever the tree is used, so nothing reads through it.
      if (t !== 'rmap' && (root < 2 || root >= agBlocks)) bad(`${t} btree root ${root} is outside the AG`);
      if (height < 1 || height > 32) bad(`${t} btree height ${height}`);
    }
    if (b.readUInt32BE(OFF_FREE_BLOCKS) > agBlocks) bad(`${b.readUInt32BE(OFF_FREE_BLOCKS)} free blocks in an AG of ${agBlocks}`);
  });
}

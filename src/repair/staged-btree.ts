/**
 * A staged btree (XFS's newbt + btree staging): a new btree built beside
 * the one in use and installed by the repair's commit transaction -- an
 * AG's (installStagedBtree) or one rooted in an inode (writeStagedBtree, the
 * caller installing the root in the fork).
 * The caller reserves the blocks the bulk loader says it needs
 * (`stagedBtreeBlocks`), then, inside its commit transaction,
 * `installStagedBtree` bulk-loads the records into them outside the cache,
 * writes them in place, and puts root, height and counts into the AG header.
 *
 * The new blocks are ordered, not logged: they were free (and not busy) in
 * every state the log can bring back, and the log force that makes the new
 * root durable syncs the device first (noteDataWritten, as for file data),
 * so no crash state sees something point at a block not yet written. This
 * keeps a big btree out of the log (which bounds a transaction) and the
 * pause short. The old tree stays in use until the transaction commits; its
 * blocks are the caller's to reap (reap.ts).
 */
import { RmapfsError } from '../errors';
import { bulkLoad, computeBulkLoadGeometry } from '../btree/bulk-load';
import type { BulkLoadGeometry, BulkLoadResult, RecordSource } from '../btree/bulk-load';
import type { Btree } from '../btree/btree';
import { slotOffset, SLOT_BLOCKS, SLOT_RECORDS } from '../format/ag-header';
import type { AgBtreeName } from '../format/ag-header';
import type { AllocGroup } from '../alloc/ag';
import type { Filesystem } from '../fs/filesystem';

/** Records of a list, in its order, as a bulk-load source (`what` names them in the error of a short list). */
export function listSource<T>(list: readonly T[], encode: (r: T, dst: Buffer, off: number) => void, what: string): RecordSource {
  let i = 0;
  return {
    next: (dst, off) => {
      const r = list[i++];
      if (r === undefined) throw new RmapfsError('EIO', `fewer ${what} than counted`);
      encode(r, dst, off);
    },
  };
}

/** Blocks a bulk load of `records` records into AG btree `name` takes (leaves packed full). */
export function stagedBtreeBlocks(ag: AllocGroup, name: AgBtreeName, records: number): number {
  return computeBulkLoadGeometry(ag[name], records, 1).totalBlocks;
}

export interface InstalledBtree {
  root: number;
  height: number;
  blocks: number;
  records: number;
  /** The bulk load and the write, in ms (part of the commit pause). */
  loadMs: number;
}

/**
 * Inside the caller's transaction: bulk-loads `records` records from `source`
 * into exactly the reserved `blocks` (pointers of `tree`'s storage, as many
 * as computeBulkLoadGeometry says) outside the cache and writes them in
 * place. The root is not installed: that is the caller's (an AG header's
 * slot, an inode's fork). `where` names the tree's home for errors.
 */
export function writeStagedBtree(fs: Filesystem, tree: Btree, records: number, source: RecordSource,
  blocks: readonly number[], where: string, arena?: Buffer): { loaded: BulkLoadResult; geometry: BulkLoadGeometry; loadMs: number } {
  const geometry = computeBulkLoadGeometry(tree, records, 1);
  if (blocks.length !== geometry.totalBlocks) {
    throw new RmapfsError('EIO', `${where}: ${blocks.length} blocks reserved for a ${tree.ops.name} btree of ${geometry.totalBlocks}`);
  }
  const t0 = process.hrtime.bigint();
  let taken = 0;
  const loaded = bulkLoad(tree, geometry, source, () => blocks[taken++]!, { outside: true, arena });
  // Not logged, yet stamped with the LSN the commit will have (or less): the offline scan for a lost
  // header's roots (ag-header-scan.ts) tells the live tree from the old one it replaced by it.
  for (const b of loaded.blocks) b.ops?.stampLsn?.(b, fs.journal.headLsn + 1);
  fs.cache.writeAround(loaded.blocks);
  fs.noteDataWritten();
  return { loaded, geometry, loadMs: Number(process.hrtime.bigint() - t0) / 1e6 };
}

/**
 * Inside the caller's transaction: loads `records` records from `source`
 * (in key order) into exactly the reserved `blocks` (AG block numbers, as
 * many as stagedBtreeBlocks said), writes them in place, and installs the
 * tree as AG btree `name`. `arena`: memory touched beforehand to build in
 * (see BulkLoadOptions).
 */
export function installStagedBtree(fs: Filesystem, ag: AllocGroup, name: AgBtreeName, records: number,
  source: RecordSource, blocks: readonly number[], arena?: Buffer): InstalledBtree {
  const tree = ag[name];
  const { loaded, geometry, loadMs } = writeStagedBtree(fs, tree, records, source, blocks, `AG ${ag.agno}`, arena);
  tree.storage.setRoot({ ptr: loaded.ptr, height: loaded.height });
  const hdr = ag.header();
  hdr.data.writeUInt32BE(geometry.totalBlocks, slotOffset(name) + SLOT_BLOCKS);
  hdr.data.writeUInt32BE(records, slotOffset(name) + SLOT_RECORDS);
  fs.cache.markDirty(hdr);
  return { root: loaded.ptr, height: loaded.height, blocks: geometry.totalBlocks, records, loadMs };
}

/**
 * Online repair of one AG's rmap btree: collect the records it should hold
 * (RmapCollector, while the filesystem stays in use), then -- in one
 * synchronous transaction, the only pause -- give the old btree's blocks
 * back, reserve blocks for the new one until the reservation converges,
 * bulk-load it, and install its root in the AG header. Until that
 * transaction commits the old btree is the one in use; after it, the new.
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import { bulkLoad, computeBulkLoadGeometry } from '../btree/bulk-load';
import { OWN_AG } from '../format/owners';
import { slotOffset, SLOT_BLOCKS, SLOT_RECORDS } from '../format/ag-header';
import { decodeRmap, encodeRmap } from '../rmap/rmap-btree';
import type { RmapRecord } from '../rmap/rmap-btree';
import type { Rmapfs } from '../fs/rmapfs';
import type { Btree } from '../btree/btree';
import { RmapCollector } from './rmap-collect';
import type { CollectOptions } from './rmap-collect';

const log = createDebug('rmapfs:repair');

export interface RmapRepairResult {
  agno: number;
  records: number;
  blocks: number;
  oldBlocks: number;
  inodesScanned: number;
  scanMs: number;
  /** Time of the bulk load alone (part of the commit pause). */
  loadMs: number;
  commitPauseMs: number;
  xfileBytes: number;
  /** heapUsed after the repair minus before (no GC forced: an upper bound on what the repair kept). */
  heapGrowthMib: number;
}

interface Extent {
  start: number;
  len: number;
}

/** Sorted, merged extents of single blocks and extents. */
function mergeExtents(list: Extent[]): Extent[] {
  const sorted = [...list].sort((a, b) => a.start - b.start);
  const out: Extent[] = [];
  for (const e of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && last.start + last.len === e.start) last.len += e.len;
    else out.push({ ...e });
  }
  return out;
}

/**
 * The AG's blocks that are neither free nor covered by the collected records
 * nor held by the free-space btrees and the free list: the old rmap btree's.
 */
function unaccounted(ag: ReturnType<Rmapfs['fs']['alloc']['ag']>, mem: Btree): Extent[] {
  const used: Extent[] = [];
  ag.bno.forEach((b, off) => { used.push({ start: b.readUInt32BE(off), len: b.readUInt32BE(off + 4) }); });
  ag.bno.visitBlocks((p) => { used.push({ start: p, len: 1 }); });
  ag.cnt.visitBlocks((p) => { used.push({ start: p, len: 1 }); });
  for (const b of ag.agflBlocks()) used.push({ start: b, len: 1 });
  const small = mergeExtents(used);
  const out: Extent[] = [];
  let at = 0;
  const take = (e: Extent): void => {
    if (e.start < at) throw new RmapfsError('EFSCORRUPTED', `AG ${ag.agno}: collected records overlap at block ${e.start}`);
    if (e.start > at) out.push({ start: at, len: e.start - at });
    at = e.start + e.len;
  };
  // Both streams are in block order: merge them, the collected records straight from the xfile btree.
  let i = 0;
  mem.forEach((b, off) => {
    if (isAgRecord(b, off)) return;
    const start = b.readUInt32BE(off);
    while (i < small.length && small[i]!.start < start) take(small[i++]!);
    take({ start, len: b.readUInt32BE(off + 4) });
  });
  while (i < small.length) take(small[i++]!);
  if (at < ag.length) out.push({ start: at, len: ag.length - at });
  return out;
}

/** The collected records of every owner but "ag", in block order, read from the xfile btree as they are needed. */
function* collected(mem: Btree): Generator<RmapRecord> {
  const cur = mem.cursor();
  for (let ok = cur.first(); ok; ok = cur.increment()) {
    const { block, offset } = cur.recordAt();
    if (isAgRecord(block, offset)) continue;
    yield decodeRmap(block, offset);
  }
}

/** Whether the record at b[off] is the "ag" owner's (owner u64 at +8). */
function isAgRecord(b: Buffer, off: number): boolean {
  return b.readUInt32BE(off + 12) === OWN_AG && b.readUInt32BE(off + 8) === 0;
}

export async function repairRmap(fsx: Rmapfs, agno: number, options: CollectOptions = {}): Promise<RmapRepairResult> {
  const fs = fsx.fs;
  const ag = fs.alloc.ag(agno);
  const t0 = process.hrtime.bigint();
  const heapBefore = process.memoryUsage().heapUsed;
  let loadMs = 0;
  const collector = new RmapCollector(fsx, agno);
  try {
    const collectResult = await collector.collect(options);
    if (options.cancelled?.()) throw new RmapfsError('ECANCELED', `repair of AG ${agno} cancelled before its commit`);
    const scanMs = Number(process.hrtime.bigint() - t0) / 1e6;
    // From here on nothing yields: this is the pause.
    const t1 = process.hrtime.bigint();
    const mem = collector.mem.tree;
    // The records of every owner but "ag" come from the collection; "ag" is redone from the AG as it is now.
    let othersCount = 0;
    mem.forEach((b, off) => { if (!isAgRecord(b, off)) othersCount++; });
    let oldBlocks = 0;
    const result = fs.run(() => {
      // 1. The old btree's blocks go back to free space (busy until a checkpoint, like any freed metadata).
      //    The old tree may be unreadable, so they are found the way XFS finds them: every block that is
      //    neither free nor accounted for by the new records is the old rmap btree's.
      const old = unaccounted(ag, mem);
      oldBlocks = old.reduce((n, e) => n + e.len, 0);
      for (const b of old) {
        ag.giveFree(b.start, b.len);
        ag.markBusy(b.start, b.len, true);
      }
      // 2. Reserve blocks for the new btree until the count stops moving (reserving changes the "ag" records).
      const reserved: Extent[] = [];
      const agExtents = (): Extent[] => {
        const list: Extent[] = [...reserved];
        ag.bno.visitBlocks((p) => { list.push({ start: p, len: 1 }); });
        ag.cnt.visitBlocks((p) => { list.push({ start: p, len: 1 }); });
        for (const b of ag.agflBlocks()) list.push({ start: b, len: 1 });
        return mergeExtents(list);
      };
      let records = 0;
      let need = 0;
      for (let round = 0; ; round++) {
        if (round > 20) throw new RmapfsError('EAGAIN', `AG ${agno}: the rmap btree reservation does not converge`);
        records = othersCount + agExtents().length;
        need = computeBulkLoadGeometry(ag.rmap, records, 1).totalBlocks;
        const have = reserved.reduce((n, e) => n + e.len, 0);
        if (have >= need) {
          if (have === need) break;
          // Too many: give the last ones back and count again.
          const extra = have - need;
          const last = reserved[reserved.length - 1]!;
          const back = Math.min(extra, last.len);
          last.len -= back;
          if (last.len === 0) reserved.pop();
          ag.giveFree(last.start + last.len, back);
          continue;
        }
        const found = ag.findFree({ minLen: 1, maxLen: need - have, goal: null });
        if (found === null) throw new RmapfsError('ENOSPC', `AG ${agno}: no space for a new rmap btree of ${need} blocks`);
        ag.takeFree(found.startblock, found.blockcount);
        reserved.push({ start: found.startblock, len: found.blockcount });
      }
      // 3. Bulk-load the records, in block order: the collected ones and the "ag" extents, merged.
      const agRecs: RmapRecord[] = agExtents().map((e) => ({ startblock: e.start, blockcount: e.len, owner: OWN_AG, offset: 0, flags: 0 }));
      const geometry = computeBulkLoadGeometry(ag.rmap, records, 1);
      const blocks: number[] = [];
      for (const e of reserved) for (let i = 0; i < e.len; i++) blocks.push(e.start + i);
      // The source merges the two block-ordered streams as the loader asks for records.
      const stream = collected(mem);
      let head = stream.next();
      let a = 0;
      let taken = 0;
      const source = {
        next: (dst: Buffer, off: number): void => {
          const useAg = a < agRecs.length && (head.done === true || agRecs[a]!.startblock < head.value.startblock);
          if (useAg) encodeRmap(agRecs[a++]!, dst, off);
          else if (head.done !== true) {
            encodeRmap(head.value, dst, off);
            head = stream.next();
          } else throw new RmapfsError('EIO', `AG ${agno}: fewer records than counted`);
        },
      };
      const tl = process.hrtime.bigint();
      const root = bulkLoad(ag.rmap, geometry, source, () => blocks[taken++]!);
      loadMs = Number(process.hrtime.bigint() - tl) / 1e6;
      // 4. Install it: root, height and counts in the AG header, all in this transaction.
      ag.rmap.storage.setRoot(root);
      const hdr = ag.header();
      hdr.data.writeUInt32BE(geometry.totalBlocks, slotOffset('rmap') + SLOT_BLOCKS);
      hdr.data.writeUInt32BE(records, slotOffset('rmap') + SLOT_RECORDS);
      fs.cache.markDirty(hdr);
      return { records, blocks: geometry.totalBlocks };
    });
    const commitPauseMs = Number(process.hrtime.bigint() - t1) / 1e6;
    const r: RmapRepairResult = {
      agno, records: result.records, blocks: result.blocks, oldBlocks, inodesScanned: collectResult.inodesScanned,
      scanMs, loadMs, commitPauseMs, xfileBytes: collector.mem.bytesHeld(),
      heapGrowthMib: Math.max(0, (process.memoryUsage().heapUsed - heapBefore) / 1048576),
    };
    log('AG %d: rmap rebuilt: %d records in %d blocks (was %d blocks); scan %d ms, pause %d ms',
      agno, r.records, r.blocks, r.oldBlocks, Math.round(scanMs), Math.round(commitPauseMs));
    return r;
  } finally {
    collector.close();
  }
}

/**
 * Online repair of one AG's inode btree, from the rmap and the inode cores
 * (the method of XFS's fs/xfs/scrub/ialloc_repair.c): every inode chunk is an
 * rmap record of the "inodes" owner, and which inodes of a chunk are in use
 * the inodes themselves say (a free inode has mode 0). The old inode btree is
 * never read: it is what may be damaged. While the filesystem stays in use:
 *
 * 1. Collect: walk the AG's rmap in block order, in paced slices; each chunk
 *    of an "inodes" record is read there (its eight inode blocks, one unit),
 *    and the "inobt" owner's blocks (the old tree's) are noted. The walk
 *    resumes by block after each slice. Two live hooks keep it current:
 *    the inode allocator's (chunks allocated and freed, inodes taken and
 *    given back) for the chunks already read -- those at or past the walk
 *    are read later, as they are then -- and the rmap's for the old tree's
 *    blocks (set semantics, as in the free-space repair).
 * 2. Commit, in ONE transaction (the only pause): blocks for the new tree
 *    from the AG's free space (not busy: they are written in place), mapped
 *    to "inobt"; bulk-load and install it (staged-btree.ts); set the header's
 *    inode counts; reap the old tree's blocks (the "inobt" owner's blocks
 *    collected, which the new ones are not among).
 *
 * Until the commit the old tree is the one in use; after it, the new.
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import { OFF_FREE_INODES, OFF_INODE_COUNT } from '../format/ag-header';
import { CHUNK_BLOCKS, INODE_SIZE, INODES_PER_BLOCK } from '../format/geometry';
import { OWN_INOBT, OWN_INODES } from '../format/owners';
import { encodeInobt, INODES_PER_CHUNK, setInodeFree } from '../alloc/inode-btree';
import type { InobtRecord } from '../alloc/inode-btree';
import type { InodeUpdate, RmapUpdate } from '../alloc/alloc';
import { INODE_MAGIC, isCleanFreeInode, OFF_I_INO, OFF_I_MODE } from '../inode/inode-format';
import { readU64 } from '../io/meta-header';
import { decodeRmapOwner, encodeRmapKey } from '../rmap/rmap-btree';
import type { Rmapfs } from '../fs/rmapfs';
import { Pacer } from '../io/pacer';
import { HookFailure, pauseBetweenSlices } from './paced-repair';
import type { PacedRepairOptions } from './paced-repair';
import { ExtentBitmap } from './bitmap';
import { installStagedBtree, listSource, stagedBtreeBlocks } from './staged-btree';
import { reapExtents } from './reap';

const log = createDebug('rmapfs:repair');

export interface InodeBtreeRepairResult {
  agno: number;
  /** Inode chunks (records of the new tree). */
  chunks: number;
  /** Inodes in those chunks, and how many of them are free (the header's counts). */
  inodes: number;
  freeInodes: number;
  btreeBlocks: number;
  /** The old tree's blocks given back to free space. */
  oldBlocks: number;
  rmapRecordsScanned: number;
  liveUpdates: number;
  scanMs: number;
  commitPauseMs: number;
}

function allFree(startino: number): InobtRecord {
  return { startino, freecount: INODES_PER_CHUNK, freeLo: 0xffffffff, freeHi: 0xffffffff };
}

/** The AG's inode chunks as the rmap and the inode cores say, and the old tree's blocks, kept current. */
class InodeChunkCollector {
  /** Chunks read so far (and those the hooks added below the walk), by first AG inode number. */
  readonly chunks = new Map<number, InobtRecord>();
  /** The "inobt" owner's blocks: the old tree's. */
  readonly oldTreeBlocks = new ExtentBitmap();
  /** The walk's position (AG block): chunks starting below it have been read. */
  private walkedTo = 0;
  liveUpdates = 0;
  recordsScanned = 0;
  private readonly hookFailure: HookFailure;
  private readonly rmapHook = (u: RmapUpdate): void => this.onRmapUpdate(u);
  private readonly inodeHook = (u: InodeUpdate): void => this.onInodeUpdate(u);

  constructor(private readonly fsx: Rmapfs, private readonly agno: number) {
    this.hookFailure = new HookFailure(`inode btree repair of AG ${agno}`, 'the old inode btree is kept');
  }

  private onRmapUpdate(u: RmapUpdate): void {
    if (u.agno !== this.agno || u.owner !== OWN_INOBT) return;
    this.liveUpdates++;
    if (u.op === 'map') this.oldTreeBlocks.add(u.startblock, u.blockcount);
    else this.oldTreeBlocks.subtract(u.startblock, u.blockcount);
  }

  private onInodeUpdate(u: InodeUpdate): void {
    if (u.agno !== this.agno) return;
    const startino = u.agino - (u.agino % INODES_PER_CHUNK);
    // A chunk the walk has not reached yet is read as it is when it gets there.
    if (startino / INODES_PER_BLOCK >= this.walkedTo) return;
    this.liveUpdates++;
    if (u.op === 'chunk-alloc') {
      this.chunks.set(startino, allFree(startino));
      return;
    }
    if (u.op === 'chunk-free') {
      this.chunks.delete(startino);
      return;
    }
    const rec = this.chunks.get(startino);
    if (rec === undefined) throw new RmapfsError('EFSCORRUPTED', `AG ${this.agno}: inode ${u.agino} changed in a chunk the rmap does not have`);
    const i = u.agino - startino;
    setInodeFree(rec, i, u.op === 'free');
    rec.freecount += u.op === 'free' ? 1 : -1;
  }

  /** Which inodes of the chunk at AG block `bno` are free, from their cores. */
  private readChunk(bno: number): InobtRecord {
    const fs = this.fsx.fs;
    const rec = allFree(bno * INODES_PER_BLOCK);
    // The chunk in one read (a block that does not verify stays out, and is read on its own below).
    fs.cache.readAhead(fs.geo.fsbno(this.agno, bno), CHUNK_BLOCKS, this.fsx.inodes.blockOps);
    for (let b = 0; b < CHUNK_BLOCKS; b++) {
      const fsbno = fs.geo.fsbno(this.agno, bno + b);
      let data: Buffer;
      let verified = true;
      try {
        data = fs.cache.read(fsbno, this.fsx.inodes.blockOps).data;
      } catch (e) {
        if (!(e instanceof RmapfsError)) throw e;
        // A block of damaged inodes (heavy damage: the inode btree and an inode at once): read as it is,
        // and an inode in it counts as in use unless it is plainly a free one -- never hand out an inode
        // that may be in use; the core repair frees what it finds nothing in.
        data = Buffer.alloc(fs.cache.blockSize);
        fs.cache.target.readBlocks(fsbno, 1, data, 0);
        verified = false;
      }
      for (let j = 0; j < INODES_PER_BLOCK; j++) {
        const off = j * INODE_SIZE;
        const free = verified ? data.readUInt16BE(off + OFF_I_MODE) === 0
          : data.readUInt32BE(off) === INODE_MAGIC && isCleanFreeInode(data, off)
            && readU64(data, off + OFF_I_INO) === fs.geo.ino(this.agno, (bno + b) * INODES_PER_BLOCK + j);
        if (free) continue;
        setInodeFree(rec, b * INODES_PER_BLOCK + j, false);
        rec.freecount--;
      }
    }
    return rec;
  }

  /** Walks the rmap in slices, reading each chunk; the hooks stay registered until close(). */
  async collect(options: PacedRepairOptions): Promise<void> {
    const alloc = this.fsx.fs.alloc;
    alloc.addRmapHook(this.rmapHook, this.hookFailure.note);
    alloc.addInodeHook(this.inodeHook, this.hookFailure.note);
    const pacer = new Pacer(options);
    const key = Buffer.alloc(alloc.ag(this.agno).rmap.ops.keySize);
    for (;;) {
      // Each slice looks its first record up afresh (the tree may have changed since the last one): the
      // one at or before the walk's position, which may be an "inodes" record reaching past it.
      const cur = alloc.ag(this.agno).rmap.cursor();
      encodeRmapKey(this.walkedTo, 0, 0, 0, key);
      let ok = cur.lookup(key, 0, 'le') || cur.first();
      let more = false;
      while (ok && !more) {
        // Read in place: only the few inode-chunk and inode-btree records are kept (no copy per record).
        const { block, offset } = cur.recordAt();
        const start = block.readUInt32BE(offset);
        const end = start + block.readUInt32BE(offset + 4);
        const owner = decodeRmapOwner(block, offset);
        if (end > this.walkedTo) {
          this.recordsScanned++;
          if (owner === OWN_INOBT) this.oldTreeBlocks.add(start, end - start);
          if (owner === OWN_INODES) {
            if (start % CHUNK_BLOCKS !== 0 || (end - start) % CHUNK_BLOCKS !== 0) {
              throw new RmapfsError('EFSCORRUPTED', `AG ${this.agno}: rmap record of inode chunks at ${start}+${end - start} is not chunk-aligned`);
            }
            // A chunk (eight inode blocks) is one unit of work.
            for (let bno = Math.max(start, this.walkedTo); bno < end && !more; bno += CHUNK_BLOCKS) {
              const chunk = this.readChunk(bno);
              this.chunks.set(chunk.startino, chunk);
              this.walkedTo = bno + CHUNK_BLOCKS;
              more = pacer.due() && this.walkedTo < end;
            }
          }
          // Past the record, unless the slice ended inside it (then at the chunk where it stopped).
          if (!more) this.walkedTo = Math.max(this.walkedTo, end);
        }
        if (!more) {
          if (pacer.due()) more = true;
          ok = cur.increment();
        }
      }
      if (!ok && !more) break;
      await pauseBetweenSlices(pacer, options, this.hookFailure, `inode btree repair of AG ${this.agno}`);
    }
    this.hookFailure.throwIfFailed();
  }

  close(): void {
    this.fsx.fs.alloc.removeRmapHook(this.rmapHook);
    this.fsx.fs.alloc.removeInodeHook(this.inodeHook);
  }
}

/** The commit: one transaction, the only pause. */
function commitInodeBtree(fsx: Rmapfs, agno: number, collector: InodeChunkCollector): Omit<InodeBtreeRepairResult, 'scanMs' | 'rmapRecordsScanned' | 'liveUpdates'> {
  const fs = fsx.fs;
  const t0 = process.hrtime.bigint();
  const result = fs.run(() => {
    const ag = fs.alloc.ag(agno);
    const records = [...collector.chunks.values()].sort((a, b) => a.startino - b.startino);
    const need = stagedBtreeBlocks(ag, 'ino', records.length);
    // The new tree's blocks, from the allocator (mapped to "inobt", never busy ones: written in place).
    const blocks: number[] = [];
    for (let i = 0; i < need; i++) blocks.push(fs.alloc.allocRepairBlock(ag, blocks[i - 1] ?? 0, OWN_INOBT));
    const installed = installStagedBtree(fs, ag, 'ino', records.length, listSource(records, (r, dst, off) => { encodeInobt(r, dst, off); }, 'inode chunks'), blocks);
    const freeInodes = records.reduce((n, r) => n + r.freecount, 0);
    const hdr = ag.header();
    hdr.data.writeUInt32BE(records.length * INODES_PER_CHUNK, OFF_INODE_COUNT);
    hdr.data.writeUInt32BE(freeInodes, OFF_FREE_INODES);
    fs.cache.markDirty(hdr);
    const oldBlocks = reapExtents(ag, collector.oldTreeBlocks, { rmapOwner: OWN_INOBT });
    return { chunks: records.length, inodes: records.length * INODES_PER_CHUNK, freeInodes, btreeBlocks: installed.blocks, oldBlocks };
  });
  const commitPauseMs = Number(process.hrtime.bigint() - t0) / 1e6;
  fs.alloc.ag(agno).health.markHealthy('inobt');
  return { agno, ...result, commitPauseMs };
}

/**
 * Rebuilds AG agno's inode btree online from its rmap and inode cores (the
 * rmap must be sound: it is the source). On failure the old tree stays in place.
 */
export async function repairInodeBtree(fsx: Rmapfs, agno: number, options: PacedRepairOptions = {}): Promise<InodeBtreeRepairResult> {
  fsx.fs.alloc.ag(agno); // an AG that does not exist fails here
  const t0 = process.hrtime.bigint();
  const collector = new InodeChunkCollector(fsx, agno);
  try {
    await collector.collect(options);
    const scanMs = Number(process.hrtime.bigint() - t0) / 1e6;
    // Nothing runs between here and the commit: the hooks have nothing more to hear.
    collector.close();
    const r = commitInodeBtree(fsx, agno, collector);
    log('AG %d: inode btree rebuilt: %d chunks, %d free inodes, %d blocks (old %d); scan %d ms, pause %s ms',
      agno, r.chunks, r.freeInodes, r.btreeBlocks, r.oldBlocks, Math.round(scanMs), r.commitPauseMs.toFixed(1));
    return { ...r, rmapRecordsScanned: collector.recordsScanned, liveUpdates: collector.liveUpdates, scanMs };
  } finally {
    collector.close();
  }
}

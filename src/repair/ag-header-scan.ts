/**
 * An AG header that cannot be read at all (a zeroed block, an impossible rmap
 * height, a bad crc...) rebuilt from the AG's own blocks -- offline only, as
 * xfs_repair does (repair/scan.c finds the btrees, phase5.c writes new
 * headers): the online header repair (ag-header-repair.ts) needs the header
 * readable to find its rmap, and everything else hangs from the header.
 *
 * Every block of the AG is read in big runs; a block of one of the AG's
 * btrees is one that verifies as such: the tree's magic, its own block
 * number, the filesystem's UUID, the AG as owner, a good crc and a level no
 * btree can exceed. Each tree's root is among its blocks that no node of the
 * same tree points to; old trees that a repair freed keep verifying until
 * their blocks are reused, so the one that changed last wins (chooseRoot).
 *
 * The header written names those roots and nothing else: its counts, its
 * free list and any tree that was not found are left to the table's
 * repairers, which the offline repair runs next (the check finds the counts
 * wrong, the free list's blocks unaccounted for, a missing tree damaged).
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import { BtreeGeometry, MAX_BTREE_HEIGHT, OFF_LEVEL, OFF_NUMRECS } from '../btree/btree-block';
import type { BtreeOps } from '../btree/btree-ops';
import { OFF_BLKNO, OFF_CRC, OFF_LSN, OFF_MAGIC, OFF_OWNER, OFF_UUID, blockCrc, readU64, stampMetaHeader, uuidAt } from '../io/meta-header';
import {
  AG_BTREES, AGH_AGBNO, AGH_MAGIC, OFF_AG_BLOCKS, OFF_AGNO, SLOT_HEIGHT, SLOT_ROOT, agHeaderBufOps, slotOffset,
} from '../format/ag-header';
import type { AgBtreeName } from '../format/ag-header';
import { BLOCK_SIZE } from '../format/superblock';
import { OWN_FS } from '../format/owners';
import { bnoBtreeOps, cntBtreeOps } from '../alloc/alloc-btree';
import { inoBtreeOps } from '../alloc/inode-btree';
import { rmapBtreeOps } from '../rmap/rmap-btree';
import type { Filesystem } from '../fs/filesystem';

const log = createDebug('rmapfs:repair');

const TREE_OPS: Record<AgBtreeName, BtreeOps> = { bno: bnoBtreeOps, cnt: cntBtreeOps, rmap: rmapBtreeOps, ino: inoBtreeOps };

/** A block that verifies as one of the AG's btree blocks. */
interface FoundBlock {
  agbno: number;
  level: number;
  lsn: number;
  /** A node's child pointers (AG block numbers); empty for a leaf. */
  children: number[];
}

/** What the scan found for one tree: its root (null: none of its blocks was found) and height. */
export interface FoundRoot {
  tree: AgBtreeName;
  root: number | null;
  height: number;
  /** Blocks of the tree found anywhere in the AG (the live tree's and any old one's). */
  blocksSeen: number;
}

export interface AgHeaderScanResult {
  agno: number;
  roots: FoundRoot[];
  blocksScanned: number;
}

/** Blocks read per device read. */
const SCAN_RUN_BLOCKS = 256;

/** Every block of AG agno that verifies as a block of one of its btrees, by tree. */
function scanAgBlocks(fs: Filesystem, agno: number): Map<AgBtreeName, Map<number, FoundBlock>> {
  const start = fs.geo.agStart(agno);
  const length = fs.geo.agLength(agno);
  const byMagic = new Map<number, { tree: AgBtreeName; geometry: BtreeGeometry }>();
  for (const tree of AG_BTREES) byMagic.set(TREE_OPS[tree].magic, { tree, geometry: new BtreeGeometry(TREE_OPS[tree], BLOCK_SIZE) });
  const found = new Map<AgBtreeName, Map<number, FoundBlock>>(AG_BTREES.map((t) => [t, new Map<number, FoundBlock>()]));
  const run = Buffer.alloc(SCAN_RUN_BLOCKS * BLOCK_SIZE);
  const uuid = fs.geo.uuid;
  for (let first = AGH_AGBNO + 1; first < length; first += SCAN_RUN_BLOCKS) {
    const n = Math.min(SCAN_RUN_BLOCKS, length - first);
    fs.target.readBlocks(start + first, n, run, 0);
    for (let i = 0; i < n; i++) {
      const b = run.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE);
      const kind = byMagic.get(b.readUInt32BE(OFF_MAGIC));
      if (kind === undefined) continue;
      const agbno = first + i;
      if (readU64(b, OFF_BLKNO) !== start + agbno || readU64(b, OFF_OWNER) !== agno) continue;
      if (!uuidAt(b, OFF_UUID, uuid) || blockCrc(b) !== b.readUInt32BE(OFF_CRC)) continue;
      const level = b.readUInt16BE(OFF_LEVEL);
      const numrecs = b.readUInt16BE(OFF_NUMRECS);
      if (level >= MAX_BTREE_HEIGHT) continue;
      const children: number[] = [];
      if (level > 0) {
        if (numrecs > kind.geometry.maxNodeRecs) continue;
        for (let k = 0; k < numrecs; k++) children.push(b.readUInt32BE(kind.geometry.nodePtrOffset + 4 * k));
      }
      found.get(kind.tree)!.set(agbno, { agbno, level, lsn: readU64(b, OFF_LSN), children });
    }
  }
  return found;
}

/** The blocks of the tree reachable from `root` (through pointers to found blocks one level down): how many, and the newest LSN among them. */
function reachable(blocks: Map<number, FoundBlock>, root: FoundBlock): { count: number; newest: number } {
  let count = 0;
  let newest = 0;
  const seen = new Set<number>();
  const stack = [root];
  while (stack.length > 0) {
    const b = stack.pop()!;
    if (seen.has(b.agbno)) continue;
    seen.add(b.agbno);
    count++;
    newest = Math.max(newest, b.lsn);
    for (const c of b.children) {
      const child = blocks.get(c);
      if (child !== undefined && child.level === b.level - 1) stack.push(child);
    }
  }
  return { count, newest };
}

/**
 * The tree's root among its found blocks, or null when none was found: of
 * the blocks no other block of the tree points to, the one whose tree
 * changed last (the newest LSN it reaches: a tree a repair replaced stopped
 * changing when it was freed, and the staged btree's blocks carry the LSN of
 * the commit that installed them), then the highest, the one reaching most
 * blocks, the old header's.
 */
function chooseRoot(blocks: Map<number, FoundBlock>, oldRoot: number): FoundBlock | null {
  const pointedTo = new Set<number>();
  for (const b of blocks.values()) for (const c of b.children) pointedTo.add(c);
  let best: { block: FoundBlock; count: number; newest: number } | null = null;
  for (const b of blocks.values()) {
    if (pointedTo.has(b.agbno)) continue;
    const r = reachable(blocks, b);
    const order = best === null ? 1 : (r.newest - best.newest) || (b.level - best.block.level) || (r.count - best.count)
      || (b.agbno === oldRoot ? 1 : 0);
    if (order > 0) best = { block: b, ...r };
  }
  return best?.block ?? null;
}

/**
 * Inside nothing (it runs its own transaction): AG agno's header rewritten
 * with the roots a scan of the AG finds. A tree not found gets the first
 * block after the headers as its root (the header must name one); it reads
 * as damaged and its repairer rebuilds it. No rmap found: EFSCORRUPTED,
 * nothing written (every other structure is rebuilt from it).
 */
export function rebuildAgHeaderFromScan(fs: Filesystem, agno: number): AgHeaderScanResult {
  const found = scanAgBlocks(fs, agno);
  const bno = fs.geo.agStart(agno) + AGH_AGBNO;
  const length = fs.geo.agLength(agno);
  const roots = fs.run(() => {
    const buf = fs.cache.read(bno, null);
    const h = buf.data;
    const chosen: FoundRoot[] = AG_BTREES.map((tree) => {
      const blocks = found.get(tree)!;
      const root = chooseRoot(blocks, h.readUInt32BE(slotOffset(tree) + SLOT_ROOT));
      return { tree, root: root?.agbno ?? null, height: root === null ? 1 : root.level + 1, blocksSeen: blocks.size };
    });
    if (chosen.find((r) => r.tree === 'rmap')!.root === null) {
      throw new RmapfsError('EFSCORRUPTED', `AG ${agno}: its header cannot be read and no rmap btree block was found in the AG`);
    }
    h.fill(0);
    stampMetaHeader(h, AGH_MAGIC, bno, fs.geo.uuid, OWN_FS);
    h.writeUInt32BE(agno, OFF_AGNO);
    h.writeUInt32BE(length, OFF_AG_BLOCKS);
    for (const r of chosen) {
      h.writeUInt32BE(r.root ?? AGH_AGBNO + 1, slotOffset(r.tree) + SLOT_ROOT);
      h.writeUInt32BE(r.height, slotOffset(r.tree) + SLOT_HEIGHT);
    }
    buf.ops = agHeaderBufOps(fs.geo.uuid, agno, length);
    fs.cache.markDirty(buf);
    return chosen;
  });
  log('AG %d: header rebuilt from a scan: %o', agno, roots);
  return { agno, roots, blocksScanned: length };
}

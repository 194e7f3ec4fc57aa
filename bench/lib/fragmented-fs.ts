/**
 * Filesystems with many rmap records, for the check and repair benchmarks,
 * built in-process through the real allocator, block maps and file writes.
 *
 * - `buildFragmentedFs`: `files` files each given `extents` one-block
 *   extents, round robin with a one-block gap in each file, so no two
 *   neighbouring blocks share an owner and every block is its own rmap
 *   record and extent. File data is not written (bench/check reads metadata).
 * - `buildMixedFs`: a mix -- many small files with real data (100 B to
 *   12 KiB, spread over directories of 1,000), fragmented large files as
 *   above, the small files created in between the rounds of the large ones
 *   so both kinds are spread over the disk, and optionally one contiguous
 *   file with real data for a foreground workload.
 */
import { mkfs } from '../../src/fs/mkfs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { BlockMap } from '../../src/file/bmap';
import { S_IFDIR, S_IFREG } from '../../src/inode/inode-format';

const BLOCK = 4096;

/** Gives each file its `e`-th one-block extent (file offset 2e: never contiguous with the last one). */
function addFragmentRound(fsx: Rmapfs, inos: number[], e: number): void {
  for (const ino of inos) {
    fsx.fs.run(() => {
      const inode = fsx.inodes.get(ino);
      const got = fsx.fs.alloc.alloc({ owner: ino, offset: e * 2, minLen: 1, maxLen: 1 });
      new BlockMap(inode, fsx.fs.alloc, fsx.fs.geo).insert({ fileoff: e * 2, blockcount: 1, fsbno: got.fsbno, unwritten: false });
      inode.nblocks = inode.nblocks + 1;
      inode.size = (e * 2 + 1) * BLOCK;
    });
  }
}

export function buildFragmentedFs(image: string, files: number, extents: number,
  progress?: (extentsDone: number) => void): Rmapfs {
  mkfs(image, { size: Math.max(1 << 30, files * extents * BLOCK * 2.5) });
  const fsx = Rmapfs.open(image);
  const inos: number[] = [];
  for (let i = 0; i < files; i++) inos.push(fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0).ino);
  for (let e = 0; e < extents; e++) {
    addFragmentRound(fsx, inos, e);
    progress?.((e + 1) * files);
  }
  return fsx;
}

export interface MixedFsPlan {
  /** Small files with real data, 100 B to 12 KiB (one to three blocks, one extent each). */
  smallFiles: number;
  /** Fragmented large files ... */
  fragmentedFiles: number;
  /** ... of this many one-block extents each (a block-map btree each beyond 12). */
  fragmentedExtents: number;
  /** A contiguous file of this many bytes of real data at /fg (0: none). */
  foregroundBytes?: number;
}

export const SMALL_FILES_PER_DIR = 1000;
const SMALL_MAX = 12 * 1024;

/** Size of small file i: 100 B .. 12 KiB, spread evenly (about two blocks on average). */
export function smallFileSize(i: number): number {
  return 100 + ((i * 7919) % (SMALL_MAX - 100));
}

/** Bytes every small file draws on: pseudo-random, made once. */
const SMALL_PATTERN = ((): Buffer => {
  const b = Buffer.alloc(SMALL_MAX);
  let x = 0x9e3779b9;
  for (let off = 0; off < SMALL_MAX; off += 4) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b.writeUInt32LE(x, off);
  }
  return b;
})();

/** What small file i holds: the shared pattern with its number at the start of every 512 bytes. */
export function smallFileData(i: number, scratch: Buffer = Buffer.alloc(SMALL_MAX)): Buffer {
  const len = smallFileSize(i);
  SMALL_PATTERN.copy(scratch, 0, 0, len);
  for (let off = 0; off + 4 <= len; off += 512) scratch.writeUInt32LE(i, off);
  return scratch.subarray(0, len);
}

/** Rough rmap records the plan makes (data extents, block-map btree blocks, directory blocks, inode chunks). */
export function estimateRecords(plan: MixedFsPlan): number {
  const bmbtPerFile = plan.fragmentedExtents > 12 ? Math.ceil(plan.fragmentedExtents / 200) : 0;
  return Math.round(plan.smallFiles * SMALL_RECORDS_PER_FILE + plan.fragmentedFiles * (plan.fragmentedExtents + bmbtPerFile));
}

/** Rmap records per small file, measured: its data extent, 1/14 of a directory block, 1/64 of an inode chunk. */
export const SMALL_RECORDS_PER_FILE = 1.12;

/** A mix that makes about `records` rmap records: `smallShare` of them small files, the rest files of `extents` one-block extents. */
export function mixedPlanFor(records: number, smallShare: number, extents: number): MixedFsPlan {
  const smallFiles = Math.round(records * smallShare / SMALL_RECORDS_PER_FILE);
  // A block-map btree block (one rmap record each) per ~200 extents.
  const bmbt = Math.ceil(extents / 200);
  const fragmentedFiles = Math.max(1, Math.round((records - smallFiles * SMALL_RECORDS_PER_FILE) / (extents + bmbt)));
  return { smallFiles, fragmentedFiles, fragmentedExtents: extents };
}

export interface MixedFsProgress {
  smallFilesDone: number;
  extentsDone: number;
}

export function buildMixedFs(image: string, plan: MixedFsPlan, progress?: (p: MixedFsProgress) => void): Rmapfs {
  const fgBytes = plan.foregroundBytes ?? 0;
  // Fragmented extents take two blocks each (the gap), small files two blocks on average, plus room to breathe.
  const blocks = plan.fragmentedFiles * plan.fragmentedExtents * 2 + plan.smallFiles * 2 + fgBytes / BLOCK;
  mkfs(image, { size: Math.max(1 << 30, Math.ceil(blocks * BLOCK * 1.5 / (1 << 20)) * (1 << 20)) });
  const fsx = Rmapfs.open(image);
  try {
    const large = fsx.mkdir(fsx.rootIno, 'large', S_IFDIR | 0o755, 0, 0).ino;
    const smallRoot = fsx.mkdir(fsx.rootIno, 'small', S_IFDIR | 0o755, 0, 0).ino;
    const inos: number[] = [];
    for (let i = 0; i < plan.fragmentedFiles; i++) inos.push(fsx.create(large, `f${i}`, S_IFREG | 0o644, 0, 0).ino);
    const scratch = Buffer.alloc(SMALL_MAX);
    let small = 0;
    let dir = 0;
    const addSmall = (upTo: number): void => {
      for (; small < upTo; small++) {
        if (small % SMALL_FILES_PER_DIR === 0) dir = fsx.mkdir(smallRoot, `d${small / SMALL_FILES_PER_DIR}`, S_IFDIR | 0o755, 0, 0).ino;
        const ino = fsx.create(dir, `s${small}`, S_IFREG | 0o644, 0, 0).ino;
        fsx.write(ino, 0, smallFileData(small, scratch));
      }
    };
    const rounds = Math.max(1, plan.fragmentedExtents);
    for (let e = 0; e < rounds; e++) {
      if (e < plan.fragmentedExtents) addFragmentRound(fsx, inos, e);
      addSmall(Math.round(plan.smallFiles * (e + 1) / rounds));
      progress?.({ smallFilesDone: small, extentsDone: (e + 1) * plan.fragmentedFiles });
    }
    if (fgBytes > 0) {
      const fg = fsx.create(fsx.rootIno, 'fg', S_IFREG | 0o644, 0, 0).ino;
      const chunk = Buffer.alloc(1 << 20);
      for (let pos = 0; pos < fgBytes; pos += chunk.length) {
        for (let off = 0; off < chunk.length; off += 4) chunk.writeUInt32LE((pos + off) >>> 0, off);
        fsx.write(fg, pos, chunk.subarray(0, Math.min(chunk.length, fgBytes - pos)));
      }
    }
  } catch (e) {
    fsx.close();
    throw e;
  }
  return fsx;
}

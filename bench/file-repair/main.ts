/**
 * bench/file-repair: the block map repair of one file (src/repair/bmap-repair.ts)
 * at 1,000, 10,000 and 50,000 one-block extents, in process (no FUSE): a
 * sparse file written every other block, so no two extents merge, beside
 * 2,000 small files (rmap records of other owners the collection walks past).
 * Each size: the repair three times (the rmap walk in 2 ms slices), then
 * the median of its commit pause (the one transaction: bulk load of the new
 * btree, written in place, the old one reaped) and of its scan. One JSON
 * object per size, the last line all of them.
 *
 *   node dist/bench/file-repair/main.js [--quick]   (1,000 and 10,000 only)
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { mkfs } from '../../src/fs/mkfs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { repairBlockMap } from '../../src/repair/bmap-repair';
import { S_IFREG } from '../../src/inode/inode-format';
import { BLOCK_SIZE } from '../../src/format/superblock';

interface Figures {
  extents: number;
  commit_pause_ms: number;
  scan_ms: number;
  rmap_records: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function measure(extents: number): Promise<Figures> {
  const image = path.join(os.tmpdir(), `rmapfs-bench-file-repair-${process.pid}.img`);
  fs.rmSync(image, { force: true });
  mkfs(image, { size: 1 << 30, agCount: 4 });
  const fsx = Rmapfs.open(image);
  try {
    const block = Buffer.alloc(BLOCK_SIZE, 0x5a);
    for (let i = 0; i < 2000; i++) fsx.write(fsx.create(fsx.rootIno, `small${i}`, S_IFREG | 0o644, 0, 0).ino, 0, block);
    const ino = fsx.create(fsx.rootIno, 'big', S_IFREG | 0o644, 0, 0).ino;
    for (let i = 0; i < extents; i++) fsx.write(ino, 2 * i * BLOCK_SIZE, block);
    fsx.fsync();
    let records = 0;
    for (const ag of fsx.fs.alloc.ags) ag.rmap.forEach(() => { records++; });
    const pauses: number[] = [];
    const scans: number[] = [];
    for (let run = 0; run < 3; run++) {
      const t0 = process.hrtime.bigint();
      const r = await repairBlockMap(fsx, ino, {});
      scans.push(Number(process.hrtime.bigint() - t0) / 1e6 - r.commitPauseMs);
      pauses.push(r.commitPauseMs);
      fsx.fsync();
    }
    return { extents, commit_pause_ms: +median(pauses).toFixed(2), scan_ms: +median(scans).toFixed(1), rmap_records: records };
  } finally {
    fsx.close();
    fs.rmSync(image, { force: true });
  }
}

async function main(): Promise<void> {
  const sizes = process.argv.includes('--quick') ? [1000, 10000] : [1000, 10000, 50000];
  const all: Figures[] = [];
  for (const n of sizes) {
    const f = await measure(n);
    console.log(JSON.stringify(f));
    all.push(f);
  }
  console.log(JSON.stringify({ bench: 'file-repair', results: all }));
}

void main();

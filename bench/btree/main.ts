/**
 * bench/btree: the generic btree engine on both targets, on 24-byte
 * rmap-shaped records (startblock u32, blockcount u32, owner u64, offset u64).
 *
 * Each run (target x record count) is a fresh child process, so its heap
 * figures are its own, and ends with one JSON line:
 *   bulk_load_rps    records/s bulk-loaded from a sorted stream (fill 1.0)
 *   insert_ps        random-order inserts/s into a second, empty tree
 *   lookup_ps        point lookups (eq) of random existing keys per second
 *   scan_rps         records/s of a full in-order range scan
 *   xfile_bytes_per_record  memory the xfile holds per record (bulk-loaded
 *                    tree; and, _inserted, for the tree built by inserts)
 *   heap_growth_mib  heapUsed after a forced GC, after both trees are built,
 *                    minus before (the records must live in the xfile)
 *
 * Usage: node dist/bench/btree/main.js [--quick]  (all runs)
 *        node dist/bench/btree/main.js --target xfile|device --records N  (one run)
 */
import { spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Btree } from '../../src/btree/btree';
import { bulkLoad, computeBulkLoadGeometry } from '../../src/btree/bulk-load';
import { MemBtree } from '../../src/btree/mem-btree';
import { RegionBtreeStorage } from '../../src/btree/region-storage';
import { verifyBtree } from '../../src/btree/verify';
import { BufCache } from '../../src/io/buf-cache';
import { Device, DeviceTarget } from '../../src/io/device';
import { rmapBtreeOps } from '../../src/rmap/rmap-btree';

const MIB = 1024 * 1024;

/** Record i of the sorted stream: distinct startblocks in increasing order. */
function sortedRecord(i: number, dst: Buffer, off: number): void {
  dst.writeUInt32BE(i * 4, off);
  dst.writeUInt32BE(1 + (i & 7), off + 4);
  dst.writeUInt32BE(0, off + 8);
  dst.writeUInt32BE(1000 + (i % 977), off + 12);
  dst.writeUInt32BE(0, off + 16);
  dst.writeUInt32BE(i, off + 20);
}

/** Record i in a scrambled order: a bijection on u32, so startblocks never collide. */
function scrambledRecord(i: number, dst: Buffer, off: number): void {
  sortedRecord(0, dst, off);
  dst.writeUInt32BE(Math.imul(i, 2654435761) >>> 0, off);
}

function heapUsedAfterGc(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with --expose-gc');
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

interface Built {
  tree: Btree;
  bytesHeld: () => number;
  close: () => void;
}

function makeTree(target: string, records: number, scratch: string[]): Built {
  if (target === 'xfile') {
    const mem = new MemBtree(rmapBtreeOps, { cacheBlocks: 4096 });
    return { tree: mem.tree, bytesHeld: () => mem.bytesHeld(), close: () => mem.close() };
  }
  const image = path.join(process.env.RMAPFS_BENCH_DIR ?? '/var/tmp', `rmapfs-bench-${process.pid}-${scratch.length}.img`);
  scratch.push(image);
  const blocks = Math.ceil(records / 60) + 1024;
  fs.writeFileSync(image, '');
  fs.truncateSync(image, (blocks + 1) * 4096);
  const device = new Device(image);
  const cache = new BufCache(new DeviceTarget(device), { maxBlocks: 4096, writeBackOnEvict: true });
  const storage = new RegionBtreeStorage(cache, crypto.randomBytes(16), 0, 1, blocks);
  const tree = Btree.create(rmapBtreeOps, storage);
  return {
    tree,
    bytesHeld: () => fs.statSync(image).blocks * 512,
    close: () => { device.close(); fs.rmSync(image, { force: true }); },
  };
}

function rate(count: number, ns: bigint): number {
  return Math.round(count / (Number(ns) / 1e9));
}

function oneRun(target: string, records: number): Record<string, number | string> {
  const scratch: string[] = [];
  const heapBefore = heapUsedAfterGc();

  // Bulk load from a sorted stream into blocks reserved up front.
  const a = makeTree(target, records, scratch);
  const geometry = computeBulkLoadGeometry(a.tree, records, 1);
  let next = 0;
  const source = { next: (dst: Buffer, off: number) => sortedRecord(next++, dst, off) };
  let t0 = process.hrtime.bigint();
  const oldRoot = a.tree.storage.getRoot();
  const root = bulkLoad(a.tree, geometry, source, () => a.tree.storage.allocBlock(0));
  a.tree.storage.setRoot(root);
  a.tree.freeBlock(oldRoot.ptr);
  a.tree.cache.flush();
  const bulkNs = process.hrtime.bigint() - t0;

  // Random inserts into a second tree.
  const b = makeTree(target, records, scratch);
  const rec = Buffer.alloc(24);
  t0 = process.hrtime.bigint();
  for (let i = 0; i < records; i++) {
    scrambledRecord(i, rec, 0);
    b.tree.insert(rec);
  }
  b.tree.cache.flush();
  const insertNs = process.hrtime.bigint() - t0;

  // Point lookups of random existing keys in the bulk-loaded tree.
  const lookups = Math.min(records, 500_000);
  const key = Buffer.alloc(20);
  const cur = a.tree.cursor();
  let found = 0;
  t0 = process.hrtime.bigint();
  for (let i = 0; i < lookups; i++) {
    const j = (Math.imul(i, 2654435761) >>> 0) % records;
    sortedRecord(j, rec, 0);
    rmapBtreeOps.keyFromRec(rec, 0, key, 0);
    if (cur.lookup(key, 0, 'eq')) found++;
  }
  const lookupNs = process.hrtime.bigint() - t0;
  if (found !== lookups) throw new Error(`lookups found ${found} of ${lookups}`);

  // Full in-order scan.
  let scanned = 0;
  t0 = process.hrtime.bigint();
  a.tree.forEach(() => { scanned++; });
  const scanNs = process.hrtime.bigint() - t0;
  if (scanned !== records) throw new Error(`scan saw ${scanned} of ${records}`);

  const heapAfter = heapUsedAfterGc();
  const verifyA = verifyBtree(a.tree);
  const verifyB = verifyBtree(b.tree);
  if (!verifyA.ok || !verifyB.ok || verifyA.records !== records || verifyB.records !== records) {
    throw new Error(`verifier: ${[...verifyA.problems, ...verifyB.problems].map((p) => p.message).join('; ')}`);
  }
  const result = {
    target,
    records,
    bulk_load_rps: rate(records, bulkNs),
    insert_ps: rate(records, insertNs),
    lookup_ps: rate(lookups, lookupNs),
    scan_rps: rate(records, scanNs),
    [`${target}_bytes_per_record`]: +(a.bytesHeld() / records).toFixed(2),
    [`${target}_bytes_per_record_inserted`]: +(b.bytesHeld() / records).toFixed(2),
    height: verifyA.height,
    blocks: geometry.totalBlocks,
    heap_growth_mib: +((heapAfter - heapBefore) / MIB).toFixed(2),
    external_mib: +(process.memoryUsage().external / MIB).toFixed(1),
  };
  a.close();
  b.close();
  return result;
}

function main(argv: string[]): number {
  const arg = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const target = arg('--target');
  if (target !== undefined) {
    const records = Number(arg('--records') ?? '100000');
    console.log(JSON.stringify(oneRun(target, records)));
    return 0;
  }
  const sizes = argv.includes('--quick') ? [100_000] : [100_000, 1_000_000];
  const runs: Record<string, number | string>[] = [];
  console.log(`bench/btree on ${os.cpus().length} cores, node ${process.version}`);
  for (const t of ['xfile', 'device']) {
    for (const n of sizes) {
      const child = spawnSync(process.execPath, ['--expose-gc', __filename, '--target', t, '--records', String(n)],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
      if (child.status !== 0) {
        console.error(`bench/btree: run ${t} ${n} failed (exit ${child.status})`);
        return 1;
      }
      const line = child.stdout.trim().split('\n').pop()!;
      runs.push(JSON.parse(line) as Record<string, number | string>);
      console.log(line);
    }
  }
  // The bars the in-memory btree must clear (issue 2), checked on the 1M-record xfile run.
  const big = runs.find((r) => r.target === 'xfile' && r.records === 1_000_000);
  const small = runs.find((r) => r.target === 'xfile' && r.records === 100_000);
  if (big !== undefined && small !== undefined) {
    const bars: [string, boolean][] = [
      ['bulk load >= 2,000,000 records/s', Number(big.bulk_load_rps) >= 2_000_000],
      ['random insert >= 200,000/s', Number(big.insert_ps) >= 200_000],
      ['point lookup >= 400,000/s', Number(big.lookup_ps) >= 400_000],
      ['xfile <= 40 bytes per record', Number(big.xfile_bytes_per_record) <= 40],
      ['heap growth <= 32 MiB', Number(big.heap_growth_mib) <= 32],
      ['heap growth does not scale with records (1M within 8 MiB of 100k)',
        Number(big.heap_growth_mib) - Number(small.heap_growth_mib) <= 8],
    ];
    for (const [name, ok] of bars) console.log(`${ok ? 'PASS' : 'MISS'}  ${name}`);
  }
  return 0;
}

process.exitCode = main(process.argv.slice(2));

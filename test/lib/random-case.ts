/**
 * The randomized model test of one btree type on both targets: 100,000
 * operations each, checked against a sorted reference model, with the
 * structural verifier after every batch. One test file per type runs it.
 */
import t from 'tap';
import { encodeRmap, rmapBtreeOps } from '../../src/rmap/rmap-btree';
import type { BtreeOps } from '../../src/btree/btree-ops';
import { Rng, testSeed } from './rng';
import { runRandomOps } from './random-ops';
import type { RecordGen } from './random-ops';
import { tinyBtreeOps } from './tiny-btree';
import { deviceTree, memTree } from './trees';
import type { TreeFixture } from './trees';

const rmapGen: RecordGen = {
  random(rng) {
    const rec = Buffer.alloc(24);
    encodeRmap({
      startblock: rng.int(1 << 18),
      blockcount: 1 + rng.int(64),
      owner: rng.next() < 0.1 ? 2 ** 53 - 1 - rng.int(8) : 128 + rng.int(1 << 20),
      offset: rng.int(1 << 30) * (rng.next() < 0.05 ? 4096 : 1),
      flags: rng.next() < 0.1 ? 0x20000000 : 0,
    }, rec, 0);
    return rec;
  },
  mutate(rec, rng) {
    const out = Buffer.from(rec);
    out.writeUInt32BE(1 + rng.int(1000), 4); // blockcount is not part of the key
    return out;
  },
};

const tinyGen: RecordGen = {
  random(rng) {
    const rec = Buffer.alloc(8);
    rec.writeUInt32BE(rng.int(40000), 0);
    rec.writeUInt32BE(rng.int(1 << 30), 4);
    return rec;
  },
  mutate(rec, rng) {
    const out = Buffer.from(rec);
    out.writeUInt32BE(rng.int(1 << 30), 4);
    return out;
  },
};

export interface Case {
  ops: BtreeOps;
  gen: RecordGen;
  targetSize: number;
  minHeight: number;
}

export const cases: Record<string, Case> = {
  rmap: { ops: rmapBtreeOps, gen: rmapGen, targetSize: 25000, minHeight: 3 },
  tiny: { ops: tinyBtreeOps, gen: tinyGen, targetSize: 3000, minHeight: 5 },
};

export function runCase(c: Case): void {
  for (const target of ['xfile', 'device'] as const) {
    t.test(`${c.ops.name} btree on ${target}: 100,000 random operations`, (t) => {
      // A small cache on the device forces evictions, write-backs and crc-checked re-reads.
      const fx: TreeFixture = target === 'xfile' ? memTree(c.ops, 256) : deviceTree(c.ops, 20000, 256);
      t.teardown(() => fx.close());
      const seed = testSeed(c.ops.name === 'rmap' ? 20261124 : 424242) + (target === 'device' ? 1 : 0);
      const stats = runRandomOps(t, fx.tree, c.gen, new Rng(seed), {
        ops: 100_000, batch: 2500, targetSize: c.targetSize, afterBatch: () => fx.dropCache(),
      });
      t.ok(stats.maxHeight >= c.minHeight, `tree grew to height ${stats.maxHeight} (>= ${c.minHeight})`);
      t.ok(stats.skipped < 1000, `${100_000 - stats.skipped} operations were real (${stats.skipped} updates found the tree empty)`);
      t.ok(stats.maxRecords >= c.targetSize * 0.9, `the tree held up to ${stats.maxRecords} records`);
      t.end();
    });
  }
}

/**
 * rmapBtreeOps.compareRecs, the fast order check every bulk load of an rmap
 * (so every repair) relies on, against the definition of the order: the keys
 * (issue 11 item 14). Random records with fields that collide often, so every
 * tie-break is reached; then the bulk loader's check, which must reject
 * records out of order or with equal keys.
 */
import t from 'tap';
import { bulkLoad, computeBulkLoadGeometry } from '../../src/btree/bulk-load';
import {
  RMAP_ATTR_FORK, RMAP_BMBT_BLOCK, RMAP_KEY_SIZE, RMAP_REC_SIZE, RMAP_UNWRITTEN, encodeRmap, rmapBtreeOps,
} from '../../src/rmap/rmap-btree';
import type { RmapRecord } from '../../src/rmap/rmap-btree';
import { Rng, testSeed } from '../lib/rng';
import { memTree } from '../lib/trees';

const seed = testSeed(14014);
t.comment(`seed ${seed} (replay with RMAPFS_SEED=${seed})`);
const rng = new Rng(seed);

/** Values from a few small ones and a few around 2^32 (the u64 fields' word boundary), so ties are common. */
function field(max: number): number {
  const picks = [0, 1, 2, 7, 0xffffffff, 0x100000000, 0x100000001, 0x1fffffff00000000 / 2, max];
  return rng.next() < 0.7 ? picks[rng.int(picks.length)]! % (max + 1) : rng.int(Math.min(max, 2 ** 40) + 1);
}

function randomRecord(): RmapRecord {
  const flagSets = [0, RMAP_UNWRITTEN, RMAP_ATTR_FORK, RMAP_BMBT_BLOCK, RMAP_ATTR_FORK | RMAP_BMBT_BLOCK, RMAP_ATTR_FORK | RMAP_UNWRITTEN];
  return {
    startblock: rng.next() < 0.5 ? rng.int(4) : field(0xffffffff),
    blockcount: 1 + rng.int(3),
    owner: rng.next() < 0.5 ? 128 + rng.int(3) : field(2 ** 52),
    offset: rng.next() < 0.5 ? rng.int(3) : field(0x1fffffffffff),
    flags: flagSets[rng.int(flagSets.length)]! >>> 0,
  };
}

const sign = (n: number): number => (n < 0 ? -1 : n > 0 ? 1 : 0);

t.test('sign(compareRecs(a, b)) = sign(compareKeys(key(a), key(b))), over random records', (t) => {
  const ops = rmapBtreeOps;
  const compareRecs = ops.compareRecs!;
  const a = Buffer.alloc(RMAP_REC_SIZE);
  const b = Buffer.alloc(RMAP_REC_SIZE);
  const ka = Buffer.alloc(RMAP_KEY_SIZE);
  const kb = Buffer.alloc(RMAP_KEY_SIZE);
  const seen = { less: 0, equal: 0, greater: 0 };
  let bad = 0;
  for (let i = 0; i < 200_000; i++) {
    const ra = randomRecord();
    // Half the pairs share a prefix of fields with the first, to reach every tie-break.
    const rb = rng.next() < 0.5 ? randomRecord() : { ...ra, ...[{}, { flags: randomRecord().flags }, { offset: randomRecord().offset },
      { owner: randomRecord().owner }, { blockcount: 1 + rng.int(3) }][rng.int(5)] };
    encodeRmap(ra, a, 0);
    encodeRmap(rb, b, 0);
    ops.keyFromRec(a, 0, ka, 0);
    ops.keyFromRec(b, 0, kb, 0);
    const want = sign(ops.compareKeys(ka, 0, kb, 0));
    const got = sign(compareRecs(a, 0, b, 0));
    const back = sign(compareRecs(b, 0, a, 0));
    seen[want < 0 ? 'less' : want > 0 ? 'greater' : 'equal']++;
    if ((got !== want || back !== -want) && bad++ < 5) {
      t.fail(`${JSON.stringify(ra)} vs ${JSON.stringify(rb)}: compareRecs ${got} / ${back}, the keys say ${want}`);
    }
    // compareRecToKey is the same order, record against key.
    if (sign(ops.compareRecToKey(a, 0, kb, 0)) !== want && bad++ < 5) t.fail(`compareRecToKey disagrees on ${JSON.stringify(ra)} vs ${JSON.stringify(rb)}`);
  }
  t.equal(bad, 0, 'no disagreement');
  t.ok(seen.less > 1000 && seen.greater > 1000 && seen.equal > 1000, `every outcome reached: ${JSON.stringify(seen)}`);
  t.end();
});

/** Distinct records in key order (sorted by key, equal keys dropped). */
function sortedRecords(n: number): Buffer[] {
  const recs: { rec: Buffer; key: Buffer }[] = [];
  for (let i = 0; i < n; i++) {
    const rec = Buffer.alloc(RMAP_REC_SIZE);
    encodeRmap(randomRecord(), rec, 0);
    const key = Buffer.alloc(RMAP_KEY_SIZE);
    rmapBtreeOps.keyFromRec(rec, 0, key, 0);
    recs.push({ rec, key });
  }
  recs.sort((x, y) => rmapBtreeOps.compareKeys(x.key, 0, y.key, 0));
  return recs.filter((r, i) => i === 0 || rmapBtreeOps.compareKeys(recs[i - 1]!.key, 0, r.key, 0) !== 0).map((r) => r.rec);
}

function load(recs: Buffer[]): void {
  const fx = memTree(rmapBtreeOps);
  try {
    const geometry = computeBulkLoadGeometry(fx.tree, recs.length, 1);
    let next = 0;
    bulkLoad(fx.tree, geometry, { next: (dst, off) => { recs[next++]!.copy(dst, off); } }, () => fx.tree.storage.allocBlock(0));
  } finally {
    fx.close();
  }
}

t.test('the bulk loader takes records in key order and rejects any out of order or repeated', (t) => {
  for (let round = 0; round < 20; round++) {
    const recs = sortedRecords(2000);
    t.doesNotThrow(() => load(recs), `round ${round}: ${recs.length} sorted records load`);
    const i = rng.int(recs.length - 1);
    const swapped = [...recs];
    [swapped[i], swapped[i + 1]] = [swapped[i + 1]!, swapped[i]!];
    t.throws(() => load(swapped), { code: 'EINVAL', message: /not in strictly increasing key order/ }, `round ${round}: two swapped at ${i} are rejected`);
    // The same key twice: a copy differing only in what the key leaves out (length, unwritten).
    const dup = Buffer.from(recs[i]!);
    dup.writeUInt32BE(dup.readUInt32BE(4) + 1, 4);
    dup.writeUInt32BE((dup.readUInt32BE(16) ^ RMAP_UNWRITTEN) >>> 0, 16);
    const repeated = [...recs.slice(0, i + 1), dup, ...recs.slice(i + 1)];
    t.throws(() => load(repeated), { code: 'EINVAL' }, `round ${round}: a repeated key at ${i} is rejected`);
  }
  t.end();
});

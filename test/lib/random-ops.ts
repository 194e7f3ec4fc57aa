/**
 * Drives a btree through a long random mix of insert / update / delete /
 * lookup (eq, le, ge) / range query / cursor walks, checking every answer
 * against a plain sorted reference model and running the structural
 * verifier after every batch.
 *
 * The model keeps keys as hex strings: every test type's key bytes are
 * unsigned big-endian fields, so byte order is key order.
 */
import type { Test } from 'tap';
import type { Btree } from '../../src/btree/btree';
import { verifyBtree } from '../../src/btree/verify';
import type { Rng } from './rng';

export interface RecordGen {
  /** A random record (its key drawn from a space a few times the live set). */
  random(rng: Rng): Buffer;
  /** The same record with its non-key fields changed. */
  mutate(rec: Buffer, rng: Rng): Buffer;
}

export interface RandomRunOptions {
  ops: number;
  batch: number;
  /** Records the tree tends towards in the growing phase before the shrinking phase empties it. */
  targetSize: number;
  /** Called after each verified batch (e.g. to drop the cache so the next reads hit the target). */
  afterBatch?: () => void;
}

export interface RandomRunStats {
  maxHeight: number;
  maxRecords: number;
  inserts: number;
  deletes: number;
  updates: number;
  lookups: number;
  queries: number;
  /** Updates chosen while the tree was empty. */
  skipped: number;
  verifies: number;
}

class Model {
  keys: string[] = [];
  recs = new Map<string, string>();

  /** Index of the first key >= k. */
  lowerBound(k: string): number {
    let lo = 0;
    let hi = this.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.keys[mid]! < k) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  insert(k: string, rec: string): void {
    this.keys.splice(this.lowerBound(k), 0, k);
    this.recs.set(k, rec);
  }

  delete(k: string): void {
    this.keys.splice(this.lowerBound(k), 1);
    this.recs.delete(k);
  }
}

export function runRandomOps(t: Test, tree: Btree, gen: RecordGen, rng: Rng, opt: RandomRunOptions): RandomRunStats {
  const { ops } = tree;
  const model = new Model();
  const keyBuf = Buffer.alloc(ops.keySize);
  const recBuf = Buffer.alloc(ops.recSize);
  const keyOf = (rec: Buffer): string => {
    ops.keyFromRec(rec, 0, keyBuf, 0);
    return keyBuf.toString('hex');
  };
  const stats: RandomRunStats = {
    maxHeight: 0, maxRecords: 0, inserts: 0, deletes: 0, updates: 0, lookups: 0, queries: 0, skipped: 0, verifies: 0,
  };
  const cur = tree.cursor();
  let failures = 0;
  const fail = (what: string): void => {
    failures++;
    if (failures <= 5) t.fail(`seed ${rng.seed}: ${what}`);
  };
  const pickExisting = (): string | undefined =>
    model.keys.length === 0 ? undefined : model.keys[rng.int(model.keys.length)];

  for (let i = 0; i < opt.ops && failures === 0; i++) {
    const growing = i < opt.ops * 0.6;
    const size = model.keys.length;
    // While growing, lean towards inserts until the target size; then drain the tree.
    // While shrinking, delete just fast enough to reach empty at the last operation.
    const drainRate = Math.min(0.5, (1.3 * size) / Math.max(1, opt.ops - i));
    const insertBias = growing ? (size < opt.targetSize ? 0.55 : 0.3) : 0.2;
    const deleteBias = growing ? (size < opt.targetSize ? 0.15 : 0.3) : 0.2 + drainRate;
    const r = rng.next();
    if (r < insertBias) {
      const rec = gen.random(rng);
      const k = keyOf(rec);
      const exists = model.recs.has(k);
      let threw = false;
      try {
        tree.insert(rec);
      } catch (e) {
        threw = (e as { code?: string }).code === 'EEXIST';
        if (!threw) throw e;
      }
      if (threw !== exists) fail(`insert ${k}: EEXIST ${threw}, model has it ${exists}`);
      if (!exists) model.insert(k, rec.toString('hex'));
      stats.inserts++;
    } else if (r < insertBias + deleteBias) {
      const existing = rng.next() < 0.85 ? pickExisting() : undefined;
      const k = existing ?? keyOf(gen.random(rng));
      const had = model.recs.has(k);
      const deleted = tree.delete(Buffer.from(k, 'hex'));
      if (deleted !== had) fail(`delete ${k}: tree said ${deleted}, model ${had}`);
      if (had) model.delete(k);
      stats.deletes++;
    } else if (r < insertBias + deleteBias + 0.1) {
      const k = pickExisting();
      if (k === undefined) {
        stats.skipped++;
        continue;
      }
      if (!cur.lookup(Buffer.from(k, 'hex'), 0, 'eq')) {
        fail(`update: lookup of existing ${k} failed`);
        continue;
      }
      const rec = gen.mutate(cur.record(), rng);
      cur.update(rec);
      model.recs.set(k, rec.toString('hex'));
      cur.copyRecord(recBuf, 0);
      if (!recBuf.equals(rec)) fail(`update ${k}: record reads back differently`);
      stats.updates++;
    } else if (r < insertBias + deleteBias + 0.25) {
      // Point lookups: eq, le, ge on an existing or random key.
      const k = rng.next() < 0.5 ? (pickExisting() ?? keyOf(gen.random(rng))) : keyOf(gen.random(rng));
      const mode = (['eq', 'le', 'ge'] as const)[rng.int(3)]!;
      const found = cur.lookup(Buffer.from(k, 'hex'), 0, mode);
      const p = model.lowerBound(k);
      let want: string | undefined;
      if (mode === 'eq') want = model.recs.has(k) ? k : undefined;
      else if (mode === 'ge') want = model.keys[p];
      else want = model.keys[p] === k ? k : (p > 0 ? model.keys[p - 1] : undefined);
      if (found !== (want !== undefined)) {
        fail(`lookup ${mode} ${k}: found ${found}, model ${want ?? 'none'}`);
        continue;
      }
      if (want !== undefined) {
        const got = cur.record().toString('hex');
        if (got !== model.recs.get(want)) fail(`lookup ${mode} ${k}: got ${got}, want ${model.recs.get(want)}`);
        // Walk a few steps either way and compare with the model's neighbours.
        const step = rng.next() < 0.5 ? 1 : -1;
        let at = model.lowerBound(want);
        for (let s = 0; s < 3; s++) {
          const moved = step > 0 ? cur.increment() : cur.decrement();
          at += step;
          const wantKey = model.keys[at];
          if (moved !== (wantKey !== undefined)) {
            fail(`${step > 0 ? 'increment' : 'decrement'} from ${want}: moved ${moved}, model ${wantKey ?? 'none'}`);
            break;
          }
          if (!moved) break;
          if (cur.record().toString('hex') !== model.recs.get(wantKey!)) fail(`walk from ${want}: wrong record at step ${s}`);
        }
      }
      stats.lookups++;
    } else {
      // Range query between two random keys (bounded slice).
      const a = keyOf(gen.random(rng));
      const lo = model.lowerBound(a);
      const span = 1 + rng.int(64);
      const hiKey = model.keys[Math.min(lo + span, model.keys.length - 1)] ?? a;
      const low = a <= hiKey ? a : hiKey;
      const high = a <= hiKey ? hiKey : a;
      const got: string[] = [];
      tree.query(Buffer.from(low, 'hex'), Buffer.from(high, 'hex'), (b, off) => {
        got.push(b.subarray(off, off + ops.recSize).toString('hex'));
      });
      const want: string[] = [];
      for (let j = model.lowerBound(low); j < model.keys.length && model.keys[j]! <= high; j++) {
        want.push(model.recs.get(model.keys[j]!)!);
      }
      if (got.join() !== want.join()) fail(`query [${low}, ${high}]: ${got.length} records, model ${want.length}`);
      stats.queries++;
    }

    if ((i + 1) % opt.batch === 0 || i + 1 === opt.ops) {
      const v = verifyBtree(tree);
      stats.verifies++;
      if (!v.ok) fail(`verifier after op ${i + 1}: ${v.problems.map((p) => p.message).join('; ')}`);
      if (v.records !== model.keys.length) fail(`verifier counted ${v.records} records, model has ${model.keys.length}`);
      stats.maxHeight = Math.max(stats.maxHeight, v.height);
      stats.maxRecords = Math.max(stats.maxRecords, model.keys.length);
      opt.afterBatch?.();
    }
  }

  // The whole content, in order, must be the model's.
  const all: string[] = [];
  tree.forEach((b, off) => { all.push(b.subarray(off, off + ops.recSize).toString('hex')); });
  const want = model.keys.map((k) => model.recs.get(k)!);
  if (all.join() !== want.join()) fail(`final scan: ${all.length} records, model ${want.length}`);
  // Then delete everything left, in random order, down to an empty root leaf.
  const rest = [...model.keys];
  for (let j = rest.length - 1; j > 0; j--) {
    const x = rng.int(j + 1);
    [rest[j], rest[x]] = [rest[x]!, rest[j]!];
  }
  for (let j = 0; j < rest.length && failures === 0; j++) {
    if (!tree.delete(Buffer.from(rest[j]!, 'hex'))) fail(`drain: ${rest[j]} was not there`);
    if ((j + 1) % opt.batch === 0 && !verifyBtree(tree).ok) fail(`verifier while draining, after ${j + 1} deletes`);
  }
  const end = verifyBtree(tree);
  if (!end.ok || end.records !== 0 || end.height !== 1) fail(`drained tree: ${end.records} records, height ${end.height}`);
  if (failures === 0) t.pass(`seed ${rng.seed}: ${opt.ops} operations agree with the model, and the tree drains to empty`);
  return stats;
}

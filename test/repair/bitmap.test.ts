/**
 * ExtentBitmap against a plain model (one boolean per block): random adds,
 * subtracts, unions and subtractions of whole bitmaps, checked after every
 * operation -- the same blocks, merged extents in block order, and the
 * queries (has, overlaps, complement) agreeing with the model.
 */
import t from 'tap';
import { ExtentBitmap } from '../../src/repair/bitmap';
import { Rng, testSeed } from '../lib/rng';

const SPACE = 200;

function modelExtents(model: boolean[]): { start: number; len: number }[] {
  const out: { start: number; len: number }[] = [];
  for (let b = 0; b < model.length; b++) {
    if (!model[b]) continue;
    const last = out[out.length - 1];
    if (last !== undefined && last.start + last.len === b) last.len++;
    else out.push({ start: b, len: 1 });
  }
  return out;
}

function randomBitmap(rng: Rng): { bitmap: ExtentBitmap; model: boolean[] } {
  const bitmap = new ExtentBitmap();
  const model = new Array<boolean>(SPACE).fill(false);
  for (let i = rng.int(6); i > 0; i--) {
    const s = rng.int(SPACE);
    const l = rng.int(Math.min(20, SPACE - s) + 1);
    bitmap.add(s, l);
    for (let b = s; b < s + l; b++) model[b] = true;
  }
  return { bitmap, model };
}

t.test('random operations agree with a per-block model', (t) => {
  const seed = testSeed(Date.now() % 1000000);
  t.comment(`seed ${seed} (replay with RMAPFS_SEED=${seed})`);
  const rng = new Rng(seed);
  let failures = 0;
  for (let run = 0; run < 200 && failures === 0; run++) {
    const bitmap = new ExtentBitmap();
    const model = new Array<boolean>(SPACE).fill(false);
    for (let step = 0; step < 60 && failures === 0; step++) {
      const op = rng.int(4);
      const s = rng.int(SPACE);
      const l = rng.int(Math.min(30, SPACE - s) + 1);
      let what: string;
      if (op === 0) {
        bitmap.add(s, l);
        for (let b = s; b < s + l; b++) model[b] = true;
        what = `add ${s}+${l}`;
      } else if (op === 1) {
        bitmap.subtract(s, l);
        for (let b = s; b < s + l; b++) model[b] = false;
        what = `subtract ${s}+${l}`;
      } else {
        const other = randomBitmap(rng);
        if (op === 2) bitmap.union(other.bitmap);
        else bitmap.subtractAll(other.bitmap);
        for (let b = 0; b < SPACE; b++) if (other.model[b]) model[b] = op === 2;
        what = `${op === 2 ? 'union' : 'subtractAll'} ${JSON.stringify(other.bitmap.extents())}`;
      }
      const want = modelExtents(model);
      const got = bitmap.extents();
      const q = rng.int(SPACE);
      const ql = rng.int(10) + 1;
      const modelOverlaps = model.slice(q, q + ql).some(Boolean);
      const complement = bitmap.complement(SPACE).extents();
      const wantComplement = modelExtents(model.map((x) => !x));
      if (JSON.stringify(got) !== JSON.stringify(want) || bitmap.has(q) !== model[q]
        || bitmap.overlaps(q, ql) !== modelOverlaps || bitmap.blocks !== model.filter(Boolean).length
        || bitmap.count !== want.length || JSON.stringify(complement) !== JSON.stringify(wantComplement)) {
        failures++;
        t.fail(`seed ${seed} run ${run} step ${step} after ${what}`, { got, want, q, complement, wantComplement });
      }
    }
  }
  t.equal(failures, 0, 'every step agreed with the model');
  t.end();
});

t.test('edge cases', (t) => {
  const b = ExtentBitmap.of([{ start: 10, len: 5 }, { start: 15, len: 5 }, { start: 30, len: 1 }]);
  t.same(b.extents(), [{ start: 10, len: 10 }, { start: 30, len: 1 }], 'touching extents merge');
  b.subtract(12, 2);
  t.same(b.extents(), [{ start: 10, len: 2 }, { start: 14, len: 6 }, { start: 30, len: 1 }], 'a hole splits an extent');
  b.add(0, 0);
  b.subtract(100, 0);
  t.equal(b.count, 3, 'empty ranges change nothing');
  t.throws(() => b.add(-1, 2), { code: 'EINVAL' }, 'a negative start is refused');
  t.same(b.clone().subtractAll(b).extents(), [], 'a set minus itself is empty');
  t.end();
});

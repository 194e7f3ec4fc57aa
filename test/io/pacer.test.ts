/** The pacer ends a slice on its time budget, its unit bound, or at once when foreground work waits. */
import t from 'tap';
import { Pacer } from '../../src/io/pacer';

function unitsUntilDue(p: Pacer, limit = 1e7): number {
  let n = 0;
  while (n < limit && !p.due()) n++;
  return n + 1;
}

t.test('a unit bound ends the slice after that many units', (t) => {
  const p = new Pacer({ maxUnits: 5, sliceMs: 1e9 });
  t.equal(unitsUntilDue(p), 5);
  t.end();
});

t.test('the time budget ends the slice', (t) => {
  // Nothing else can end it: no unit bound, no foreground probe. The loop gives up on its own after a
  // second (300 budgets), so without the budget check the pacer never says due and the test fails
  // rather than spinning through ten million units and passing anyway.
  const p = new Pacer({ sliceMs: 3 });
  const t0 = process.hrtime.bigint();
  const elapsedMs = (): number => Number(process.hrtime.bigint() - t0) / 1e6;
  let units = 0;
  let due = false;
  while (elapsedMs() < 1000) {
    units++;
    if (p.due()) {
      due = true;
      break;
    }
  }
  const ms = elapsedMs();
  t.ok(due, `the pacer ended the slice (after ${units} units, ${ms.toFixed(2)} ms)`);
  t.ok(ms >= 3, 'not before its budget was spent');
  t.end();
});

t.test('waiting foreground work ends the slice at the next probe, and pause starts a new slice', async (t) => {
  let waiting = false;
  let probes = 0;
  const p = new Pacer({ sliceMs: 1e9, probeUs: 0, foregroundWaiting: () => { probes++; return waiting; } });
  let ended = 0;
  for (let i = 0; i < 1000; i++) if (p.due()) ended++;
  t.equal(ended, 0, 'nothing waits: the slice runs on');
  t.ok(probes > 0, 'the probe was asked');
  waiting = true;
  t.equal(unitsUntilDue(p), 1, 'ends at once');
  t.equal(p.yieldsToForeground, 1);
  await p.pause();
  t.equal(p.slices, 1);
  waiting = false;
  t.equal(unitsUntilDue(p, 1000), 1001, 'a new slice runs on while nothing waits');
  t.end();
});

t.test('once due, due until the pause: asking again cannot miss a waiting request', async (t) => {
  let waiting = true;
  const q = new Pacer({ sliceMs: 1e9, probeUs: 0, foregroundWaiting: () => waiting });
  t.equal(q.due(), true, 'a waiting request ends the slice');
  waiting = false; // the request was read meanwhile, or the next probe would be too soon to ask
  t.equal(q.due(), true, 'asked again before the pause: still due');
  t.equal(q.yieldsToForeground, 1, 'counted once');
  await q.pause();
  t.equal(q.due(), false, 'a new slice after the pause');
  const r = new Pacer({ maxUnits: 2, sliceMs: 1e9 });
  r.due();
  t.equal(r.due(), true, 'the unit bound ends the slice');
  t.equal(r.due(), true, 'and it stays ended');
  t.end();
});

t.test('with no time limit and no foreground (an unmounted filesystem) only the unit bound ends a slice', (t) => {
  const free = new Pacer({ sliceMs: Infinity });
  const t0 = process.hrtime.bigint();
  let due = false;
  // Longer than any default budget (2 ms): a pacer that still timed its slices would say due here.
  while (Number(process.hrtime.bigint() - t0) / 1e6 < 20) due ||= free.due();
  t.notOk(due, 'no slice ended in 20 ms');
  t.equal(unitsUntilDue(new Pacer({ sliceMs: Infinity, maxUnits: 7 })), 7, 'the unit bound still holds');
  t.end();
});

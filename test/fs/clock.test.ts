/** The clock that stamps inode times: nanoseconds on the wall clock, never going backwards. */
import t from 'tap';
import { now } from '../../src/inode/inode';

t.test('inode times never go backwards from one reading to the next', (t) => {
  // The old clock pasted hrtime's sub-millisecond digits onto Date.now(): within a millisecond it
  // went backwards about half the time, so 100k readings (tens of milliseconds) always caught it.
  let last = now();
  let backwards = 0;
  for (let i = 0; i < 100000; i++) {
    const t1 = now();
    if (t1.sec < last.sec || (t1.sec === last.sec && t1.nsec < last.nsec)) backwards++;
    last = t1;
  }
  t.equal(backwards, 0, 'no reading before the one before it');
  t.end();
});

t.test('inode times are the wall clock', (t) => {
  const before = Date.now();
  const n = now();
  const after = Date.now();
  const ms = n.sec * 1000 + n.nsec / 1e6;
  t.ok(ms >= before - 3 && ms <= after + 3, `${ms} within [${before}, ${after}] (+-3 ms)`);
  t.ok(Number.isInteger(n.nsec) && n.nsec >= 0 && n.nsec < 1e9, 'nsec in range');
  t.end();
});

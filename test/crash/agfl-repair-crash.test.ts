/** Crash consistency of the online free list repair, with writers running: see header-repair-rounds.ts. */
import t from 'tap';
import { testSeed } from '../lib/rng';
import { headerRepairCrashRounds } from './header-repair-rounds';

t.test('free list repairs with writers running: every crash point checks clean', async (t) => {
  await headerRepairCrashRounds(t, 'agfl', testSeed(1212));
  t.end();
});

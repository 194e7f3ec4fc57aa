/** Crash consistency of the online AG header repair, with writers running: see header-repair-rounds.ts. */
import t from 'tap';
import { testSeed } from '../lib/rng';
import { headerRepairCrashRounds } from './header-repair-rounds';

t.test('AG header repairs with writers running: every crash point checks clean', async (t) => {
  await headerRepairCrashRounds(t, 'agh', testSeed(1212));
  t.end();
});

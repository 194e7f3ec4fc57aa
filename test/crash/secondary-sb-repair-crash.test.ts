/** Crash consistency of the online secondary superblock repair, with writers running: see header-repair-rounds.ts. */
import t from 'tap';
import { testSeed } from '../lib/rng';
import { headerRepairCrashRounds } from './header-repair-rounds';

t.test('secondary superblock repairs with writers running: every crash point checks clean', async (t) => {
  await headerRepairCrashRounds(t, 'secondary-sb', testSeed(1212));
  t.end();
});

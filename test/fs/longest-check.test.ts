/**
 * The AG header's longest free extent is checked against the cntbt where the
 * allocator meets it: before an allocation or a free rewrites it, and before
 * an AG is passed over as too full. A lie marks the header sick and fails
 * the operation with EFSCORRUPTED (the lie stays for the repairer to see)
 * instead of being overwritten unnoticed or steering allocations away.
 */
import t from 'tap';
import type { Test } from 'tap';
import { Filesystem } from '../../src/fs/filesystem';
import { OFF_LONGEST } from '../../src/format/ag-header';
import { scratchImage } from '../lib/fs';
import { caught } from '../lib/caught';

const OWNER = 100000;

/** A one-AG filesystem whose header's longest free extent is set to `lie` (committed: damage on disk would be read the same). */
function withLongest(t: Test, lie: (truth: number) => number): { f: Filesystem; truth: number; lie: number } {
  const f = Filesystem.open(scratchImage(t, { agCount: 1 }));
  t.teardown(() => f.close());
  const ag = f.alloc.ag(0);
  const truth = ag.longestFree;
  const value = lie(truth);
  f.run(() => {
    const hdr = ag.header();
    hdr.data.writeUInt32BE(value, OFF_LONGEST);
    f.cache.markDirty(hdr);
  });
  return { f, truth, lie: value };
}

function expectSick(t: Test, f: Filesystem, lie: number, what: string, op: () => unknown): void {
  const ag = f.alloc.ag(0);
  t.match(caught(() => f.run(op)), { code: 'EFSCORRUPTED' }, `${what}: EFSCORRUPTED`);
  t.ok(ag.health.isSick('agh'), `${what}: the AG header is marked sick`);
  t.equal(ag.longestFree, lie, `${what}: the lie was not overwritten`);
}

t.test('too small: an allocation that fits is not refused as if the AG were full', (t) => {
  const { f, lie } = withLongest(t, () => 3);
  expectSick(t, f, lie, 'allocating 8 blocks', () => f.alloc.alloc({ owner: OWNER, minLen: 8, maxLen: 8, agno: 0 }));
  t.end();
});

t.test('too small: an allocation that the lie lets through checks it before rewriting it', (t) => {
  const { f, lie } = withLongest(t, (truth) => truth - 1);
  expectSick(t, f, lie, 'allocating 1 block', () => f.alloc.alloc({ owner: OWNER, minLen: 1, maxLen: 1, agno: 0 }));
  t.end();
});

t.test('too large: an allocation checks it before rewriting it', (t) => {
  const { f, lie } = withLongest(t, (truth) => truth + 1000);
  expectSick(t, f, lie, 'allocating 1 block', () => f.alloc.alloc({ owner: OWNER, minLen: 1, maxLen: 1, agno: 0 }));
  t.end();
});

t.test('a free checks it before rewriting it', (t) => {
  const f = Filesystem.open(scratchImage(t, { agCount: 1 }));
  t.teardown(() => f.close());
  const ag = f.alloc.ag(0);
  const got = f.run(() => f.alloc.alloc({ owner: OWNER, minLen: 4, maxLen: 4, agno: 0 }));
  f.run(() => {
    const hdr = ag.header();
    hdr.data.writeUInt32BE(ag.longestFree - 1, OFF_LONGEST);
    f.cache.markDirty(hdr);
  });
  expectSick(t, f, ag.longestFree, 'freeing 4 blocks', () => f.alloc.free(got.fsbno, 4, OWNER));
  t.end();
});

t.test('a true value: allocations and frees go on', (t) => {
  const { f, truth } = withLongest(t, (truth) => truth);
  const got = f.run(() => f.alloc.alloc({ owner: OWNER, minLen: 8, maxLen: 8, agno: 0 }));
  f.run(() => f.alloc.free(got.fsbno, 8, OWNER));
  t.equal(f.alloc.ag(0).longestFree, truth, 'back to where it was');
  t.notOk(f.alloc.ag(0).health.isSick('agh'), 'not sick');
  t.match(caught(() => f.run(() => f.alloc.alloc({ owner: OWNER, minLen: truth + 1, maxLen: truth + 1, agno: 0 }))),
    { code: 'ENOSPC' }, 'an allocation past the longest is ENOSPC');
  t.notOk(f.alloc.ag(0).health.isSick('agh'), 'and the header is not blamed for it');
  t.end();
});

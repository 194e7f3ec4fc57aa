/**
 * A live rmap hook that fails (issue 11 item 12): the allocator must not drop
 * it silently -- its owner is told -- and the repair that registered it fails
 * with the old rmap kept and nothing committed, while the foreground
 * operation that triggered it succeeds.
 */
import t from 'tap';
import * as crypto from 'crypto';
import { Rmapfs } from '../../src/fs/rmapfs';
import { repairRmap } from '../../src/repair/rmap-repair';
import type { RmapUpdate } from '../../src/alloc/alloc';
import { BufCache } from '../../src/io/buf-cache';
import { XfileTarget } from '../../src/io/xfile';
import { RmapfsError } from '../../src/errors';
import { decodeRmap } from '../../src/rmap/rmap-btree';
import { S_IFREG } from '../../src/inode/inode-format';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

t.test('a hook that throws is unregistered and its owner told; the others hear on; the transaction stands', (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const alloc = fsx.fs.alloc;
  const failures: unknown[] = [];
  let throwingCalls = 0;
  const heard: RmapUpdate[] = [];
  const throwing = (): void => {
    throwingCalls++;
    throw new RmapfsError('ENOMEM', 'no room for the update');
  };
  const listening = (u: RmapUpdate): void => { heard.push(u); };
  alloc.addRmapHook(throwing, (e) => failures.push(e));
  alloc.addRmapHook(listening, () => t.fail('the healthy hook failed'));
  const f = fsx.create(fsx.rootIno, 'f', S_IFREG | 0o644, 0, 0).ino;
  fsx.write(f, 0, Buffer.alloc(3 * 4096, 1));
  t.equal(failures.length, 1, 'the owner of the failing hook was told once');
  t.match((failures[0] as Error).message, /no room for the update/, 'with its error');
  t.equal(throwingCalls, 1, 'and the hook was not called again');
  t.ok(heard.some((u) => u.op === 'map' && u.owner === f && u.blockcount === 3), 'the healthy hook heard the update the failing one did not take');
  t.ok(fsx.read(f, 0, 3 * 4096).equals(Buffer.alloc(3 * 4096, 1)), 'the write committed');
  alloc.removeRmapHook(listening);
  t.same(check(fsx), [], 'check clean');
  t.end();
});

t.test('the repair whose live update fails is aborted: the old rmap kept, the foreground write done', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const files: number[] = [];
  for (let i = 0; i < 100; i++) {
    const ino = fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0).ino;
    fsx.write(ino, 0, crypto.randomBytes(5000));
    files.push(ino);
  }
  fsx.fsync();
  const ag = fsx.fs.alloc.ag(0);
  const recordsOf = (): string[] => {
    const out: string[] = [];
    ag.rmap.forEach((b, off) => { out.push(JSON.stringify(decodeRmap(b, off))); });
    return out;
  };
  const rootBefore = ag.rmap.storage.getRoot().ptr;
  // The fault: while armed, every change to an in-memory (xfile) btree fails, as if the xfile were out of
  // memory. Armed only around one foreground write, so what fails is the live hook applying it.
  const markDirty = BufCache.prototype.markDirty;
  let armed = false;
  let injected = 0;
  BufCache.prototype.markDirty = function (this: BufCache, buf) {
    if (armed && this.target instanceof XfileTarget) {
      injected++;
      throw new RmapfsError('ENOMEM', 'in-memory btree full (injected)');
    }
    markDirty.call(this, buf);
  };
  t.teardown(() => { BufCache.prototype.markDirty = markDirty; });
  let slices = 0;
  const appended = Buffer.alloc(64 * 1024, 0x5c);
  let foreground = 'not run';
  await t.rejects(repairRmap(fsx, 0, {
    sliceInodes: 8, sliceMs: 1e9, betweenSlices: () => {
      if (++slices !== 4) return;
      // f0 is scanned by now: its new blocks' rmap change goes to the hook (in AG 0 or 1: write both).
      armed = true;
      try {
        fsx.write(files[0]!, 5000, appended);
        fsx.write(files[1]!, 5000, appended);
        foreground = 'ok';
      } catch (e) {
        foreground = e instanceof Error ? e.message : String(e);
      } finally {
        armed = false;
      }
      // More changes after the failure: a repair that went on would commit a btree without them.
      for (const ino of files.slice(2, 40)) fsx.write(ino, 5000, appended);
    },
  }), { code: 'ENOMEM', message: /the live update hook failed: in-memory btree full \(injected\); the old rmap is kept/ },
  'the repair fails, saying why');
  t.ok(injected > 0, 'the fault was hit');
  t.equal(foreground, 'ok', 'the foreground writes succeeded');
  t.equal(ag.rmap.storage.getRoot().ptr, rootBefore, 'the old rmap root stays');
  t.ok(fsx.read(files[0]!, 5000, appended.length).equals(appended), 'the written data reads back');
  t.same(check(fsx), [], 'check clean: the old rmap holds the foreground write, nothing stale was committed');
  t.ok(recordsOf().length > 0, 'the rmap is readable');
  // A repair after it works.
  await repairRmap(fsx, 0);
  t.same(check(fsx), [], 'a later repair succeeds, clean');
  t.end();
});

/**
 * Device faults: an operation whose I/O fails gets EIO; a failed metadata
 * write or flush shuts the filesystem down (no more writing, reads go on);
 * after it, the device as it is mounts again and checks clean, with what was
 * made durable before.
 */
import t from 'tap';
import * as crypto from 'crypto';
import { Rmapfs } from '../../src/fs/rmapfs';
import { FaultInjector } from '../../src/io/fault-injector';
import { checkDevice, CHECK_CLEAN } from '../../src/fsck/check';
import { S_IFREG } from '../../src/inode/inode-format';
import { scratchImage } from '../lib/fs';

t.test('fault rules parse, and bad ones are refused', (t) => {
  const f = new FaultInjector('write:10-20+read@3*2+sync@5');
  t.doesNotThrow(() => f.beforeWrite(9 * 4096, 4096), 'write before the range');
  t.throws(() => f.beforeWrite(9 * 4096, 8192), { code: 'EIO' }, 'a write touching the range');
  t.doesNotThrow(() => f.beforeRead(0, 4096));
  t.doesNotThrow(() => f.beforeRead(0, 4096));
  t.throws(() => f.beforeRead(0, 4096), { code: 'EIO' }, 'the third read');
  t.throws(() => f.beforeRead(0, 4096), { code: 'EIO' }, 'the fourth');
  t.doesNotThrow(() => f.beforeRead(0, 4096), 'then the device recovers');
  f.set('off');
  t.doesNotThrow(() => f.beforeWrite(15 * 4096, 4096), 'off: no faults');
  for (const bad of ['write', 'write:5', 'sync:1-2', 'read@0', 'flush@1', 'write:9-3']) {
    t.throws(() => f.set(bad), { code: 'EINVAL' }, `'${bad}' refused`);
  }
  t.end();
});

t.test('a failed data read or write is EIO for that operation only', (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const faults = new FaultInjector();
  const fsx = Rmapfs.open(image, { interposers: [faults] });
  const ino = fsx.create(fsx.rootIno, 'f', S_IFREG | 0o644, 0, 0).ino;
  const data = crypto.randomBytes(40000);
  fsx.write(ino, 0, data);
  fsx.fsync();
  faults.set('read@1*1');
  t.throws(() => fsx.read(ino, 0, 4096), { code: 'EIO' }, 'the read fails');
  t.ok(fsx.read(ino, 0, data.length).equals(data), 'the next read works');
  faults.set('write@1*1');
  const before = fsx.stat(ino);
  t.throws(() => fsx.write(ino, 100000, Buffer.alloc(8192, 1)), { code: 'EIO' }, 'a write to new blocks fails');
  t.equal(fsx.stat(ino).size, before.size, 'and left no trace (its transaction rolled back)');
  fsx.write(ino, 100000, Buffer.alloc(8192, 1));
  t.equal(fsx.fs.shutdownWhy, null, 'data errors do not shut the filesystem down');
  fsx.close();
  t.equal(checkDevice(image).status, CHECK_CLEAN, 'clean');
  t.end();
});

const CASES = [
  { rule: 'sync@1', step: 'fsync' }, { rule: 'write@1', step: 'fsync' },
  { rule: 'write@2', step: 'checkpoint' }, { rule: 'write@4*1', step: 'checkpoint' }, { rule: 'sync@2', step: 'checkpoint' },
] as const;
for (const { rule, step } of CASES) {
  t.test(`a failed ${step} (${rule}) shuts down; the next mount is clean with what was durable`, (t) => {
    const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
    const faults = new FaultInjector();
    let fsx = Rmapfs.open(image, { interposers: [faults] });
    const durable = crypto.randomBytes(30000);
    const a = fsx.create(fsx.rootIno, 'durable', S_IFREG | 0o644, 0, 0).ino;
    fsx.write(a, 0, durable);
    fsx.fsync();
    let shutdownLine = '';
    fsx.fs.onShutdown = (why) => { shutdownLine = why; };
    for (let i = 0; i < 20; i++) fsx.create(fsx.rootIno, `lost${i}`, S_IFREG | 0o644, 0, 0);
    faults.set(rule);
    t.throws(() => (step === 'fsync' ? fsx.fsync() : fsx.fs.checkpoint()), { code: 'EIO' }, `the ${step} fails`);
    t.match(shutdownLine, /failed/, `told why: ${shutdownLine}`);
    t.throws(() => fsx.create(fsx.rootIno, 'more', S_IFREG | 0o644, 0, 0), { code: 'EIO' }, 'no more changes');
    t.ok(fsx.read(a, 0, durable.length).equals(durable), 'reads go on');
    faults.set('off');
    t.throws(() => fsx.fsync(), { code: 'EIO' }, 'still shut down when the device recovers');
    fsx.close(); // writes nothing
    t.equal(checkDevice(image).status, CHECK_CLEAN, 'the device checks clean (the journal replayed)');
    fsx = Rmapfs.open(image);
    t.ok(fsx.read(fsx.lookup(fsx.rootIno, 'durable'), 0, durable.length).equals(durable), 'what was durable is there');
    fsx.create(fsx.rootIno, 'after', S_IFREG | 0o644, 0, 0);
    fsx.close();
    t.equal(checkDevice(image).status, CHECK_CLEAN, 'and works again');
    t.end();
  });
}

/** Out of space, a write over a file's blocks and a hole writes what fits (a short count) or nothing: never a failure that changed data. */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { RmapfsError } from '../../src/errors';
import { S_IFREG } from '../../src/inode/inode-format';
import { scratchImage } from '../lib/fs';

t.test('ENOSPC: a short write up to the first hole, or nothing changed', (t) => {
  const image = scratchImage(t, { size: 16 << 20, agCount: 1 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const victim = fsx.create(fsx.rootIno, 'victim', S_IFREG | 0o644, 0, 0).ino;
  fsx.write(victim, 0, Buffer.alloc(65536, 0x58));
  fsx.truncate(victim, 1 << 20); // the rest a hole
  const fill = fsx.create(fsx.rootIno, 'fill', S_IFREG | 0o644, 0, 0).ino;
  for (let at = 0; ; at += 1 << 20) {
    try {
      fsx.write(fill, at, Buffer.alloc(1 << 20));
    } catch (e) {
      if (e instanceof RmapfsError && e.code === 'ENOSPC') break;
      throw e;
    }
  }
  for (let i = 0; ; i++) {
    try {
      fsx.write(fill, 1e9 + i * 8192, Buffer.alloc(4096));
    } catch (e) {
      if (e instanceof RmapfsError && e.code === 'ENOSPC') break;
      throw e;
    }
  }
  const n = fsx.write(victim, 0, Buffer.alloc(131072, 0x59));
  t.equal(n, 65536, 'the write stops at the hole: a short count');
  t.ok(fsx.read(victim, 0, 65536).every((b) => b === 0x59), 'what it reports written is written');
  t.ok(fsx.read(victim, 65536, 65536).every((b) => b === 0), 'the hole is still a hole');
  t.throws(() => fsx.write(victim, 70000, Buffer.alloc(5000, 0x5a)), { code: 'ENOSPC' }, 'all in a hole: ENOSPC');
  t.ok(fsx.read(victim, 65536, 65536).every((b) => b === 0), 'and nothing changed');
  t.end();
});

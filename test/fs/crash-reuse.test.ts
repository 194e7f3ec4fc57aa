/**
 * Freed metadata must not be reused for file data while the log still holds
 * older images of it: a crash would replay those images over the data.
 */
import t from 'tap';
import * as crypto from 'crypto';
import { Rmapfs } from '../../src/fs/rmapfs';
import { S_IFREG } from '../../src/inode/inode-format';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

t.test('an inode chunk freed, the space filled with data, a crash: the data survives replay', (t) => {
  const image = scratchImage(t, { size: 16 << 20, agCount: 1 });
  let fsx = Rmapfs.open(image);
  const root = fsx.rootIno;
  // Enough files for a second inode chunk, forced to the log (not checkpointed: the images stay in the log).
  fsx.fs.checkpoint();
  for (let i = 0; i < 120; i++) fsx.create(root, `f${i}`, S_IFREG | 0o644, 0, 0);
  fsx.fsync();
  // Deleting them logs the chunks' blocks and frees the second chunk.
  for (let i = 0; i < 120; i++) fsx.unlink(root, `f${i}`);
  fsx.fsync();
  // Fill every free block with data (the freed chunk included, once it is safe), forced to the log.
  const f = fsx.create(root, 'data', S_IFREG | 0o644, 0, 0).ino;
  const chunk = crypto.randomBytes(64 * 1024);
  let size = 0;
  for (;;) {
    try {
      fsx.write(f, size, chunk);
      size += chunk.length;
    } catch (e) {
      t.equal((e as { code?: string }).code, 'ENOSPC', `filled ${size} bytes`);
      break;
    }
  }
  fsx.fsync();
  fsx.fs.abandon(); // crash: replay on the next open
  fsx = Rmapfs.open(image);
  t.same(check(fsx), [], 'check clean after replay');
  let intact = true;
  for (let pos = 0; pos < size; pos += chunk.length) {
    if (!fsx.read(f, pos, chunk.length).equals(chunk)) intact = false;
  }
  t.ok(intact, 'every block of the data file reads back as written');
  fsx.close();
  t.end();
});

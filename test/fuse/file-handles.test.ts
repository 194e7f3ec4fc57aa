/**
 * File handles through a real mount (export support): name_to_handle_at(2)
 * of a file and of a directory, open_by_handle_at(2) after a remount (the
 * kernel no longer caches them: it sends LOOKUP of "." with the handle's node
 * id, and of ".." to reconnect a directory to the root) reads the right
 * data; the handle of a deleted file, and of one whose inode number a new
 * file took (another generation), is ESTALE; so is a number that never was
 * an inode. The C helper (test/lib/fhandle.c) is compiled at test time.
 */
import t from 'tap';
import * as fs from 'fs';
import { spawnSync } from 'child_process';
import { ScratchMount, canMount } from '../lib/mount';

if (!canMount) t.plan(0, 'skipped: needs root and /dev/fuse');
else {
  t.test('handles survive a remount; deleted and reused inodes are ESTALE', (t) => {
    const m = new ScratchMount(t);
    const fhandle = m.compile('fhandle');
    const save = (p: string): string[] => {
      const r = spawnSync(fhandle, ['save', p], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`fhandle save ${p}: ${r.stdout}${r.stderr}`);
      return r.stdout.trim().split(' ');
    };
    /** What open_by_handle_at gives: "file INO DATA", "dir INO NAMES", or the errno name. */
    const open = (handle: string[]): string => spawnSync(fhandle, ['open', m.mnt, ...handle], { encoding: 'utf8' }).stdout.trim();

    fs.mkdirSync(m.path('a', 'b'), { recursive: true });
    fs.writeFileSync(m.path('a', 'b', 'file'), 'the data');
    fs.writeFileSync(m.path('a', 'b', 'other'), 'more');
    fs.writeFileSync(m.path('doomed'), 'deleted soon');
    fs.writeFileSync(m.path('reused'), 'my inode number goes to another file');
    const fileIno = fs.statSync(m.path('a', 'b', 'file')).ino;
    const dirIno = fs.statSync(m.path('a', 'b')).ino;
    const file = save(m.path('a', 'b', 'file'));
    const dir = save(m.path('a', 'b'));
    const root = save(m.mnt);
    const doomed = save(m.path('doomed'));
    const reusedIno = fs.statSync(m.path('reused')).ino;
    const reused = save(m.path('reused'));
    t.equal(open(file), `file ${fileIno} the data`, 'a file by its handle, while cached');

    m.cycle();
    t.equal(open(file), `file ${fileIno} the data`, 'a file by its handle after a remount');
    t.equal(open(dir), `dir ${dirIno} file other`, 'a directory by its handle after a remount');
    t.equal(open(root), `dir 1 a doomed reused`, 'the root');

    fs.unlinkSync(m.path('doomed'));
    m.cycle();
    t.equal(open(doomed), 'ESTALE', 'the handle of a deleted file');

    // The inode number goes to the next file created (the allocator takes the freed slot again).
    fs.unlinkSync(m.path('reused'));
    let taker = '';
    for (let i = 0; i < 64 && taker === ''; i++) {
      fs.writeFileSync(m.path(`new${i}`), `new file ${i}`);
      if (fs.statSync(m.path(`new${i}`)).ino === reusedIno) taker = `new${i}`;
    }
    t.not(taker, '', `a new file took inode ${reusedIno}`);
    t.equal(open(reused), 'ESTALE', 'the old handle of a reused inode number, cached');
    const takerHandle = save(m.path(taker));
    m.cycle();
    t.equal(open(reused), 'ESTALE', 'the old handle of a reused inode number, after a remount');
    t.equal(open(takerHandle), `file ${reusedIno} ${`new file ${taker.slice(3)}`}`, "the new file's own handle opens it");

    // Handles naming inode numbers never in use (generation 0): past AG 1's end (node id 2^32 +
    // 0x100000), and in its free space (block 2000 of AG 1: node id 2^32 + 16000). Neither is read
    // as an inode: nothing is reported damaged.
    t.equal(open([file[0]!, '010000000000100000000000']), 'ESTALE', 'a made-up inode number past the AG');
    t.equal(open([file[0]!, '01000000803e000000000000']), 'ESTALE', 'a made-up inode number in free space');
    const status = m.status();
    t.same(status.damaged, [], 'nothing is damaged');
    t.equal(status.internalErrors, 0, 'no internal errors');
    t.end();
  });
}

/**
 * `rmapfs check`: fsck exit statuses (0 clean, 4 corruption, 8 operational,
 * 16 usage), one line per problem, --json, a dirty journal replayed in
 * memory only -- and, run as the real command, no stack traces.
 */
import t from 'tap';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { cli } from './cli';
import { Filesystem } from '../../src/fs/filesystem';
import { checkFilesystem } from '../../src/fsck/check';
import { checkStructures } from '../../src/fsck/table';
import { ProblemList, runToEnd } from '../../src/scrub/common';
import type { ScrubSource } from '../../src/scrub/common';
import { scratchImage } from '../lib/fs';
import { scratchPath } from '../lib/trees';

const BIN = path.resolve(__dirname, '../../../bin/rmapfs');

function spawn(...argv: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...argv], { encoding: 'utf8', env: { ...process.env, DEBUG: '' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function sha(p: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
}

function small(t: Parameters<typeof scratchImage>[0]): string {
  return scratchImage(t, { size: 16 << 20, agCount: 2 });
}

t.test('a fresh filesystem checks clean, and check writes nothing', async (t) => {
  const image = small(t);
  const before = sha(image);
  const r = await cli('check', image);
  t.equal(r.code, 0, r.out.join('\n'));
  t.same(r.err, []);
  t.equal(r.out.length, 1, 'one summary line');
  t.match(r.out[0], /^rmapfs check: clean \(2 AGs, 4096 blocks, \d+ free, \d+ rmap records\)$/);
  t.equal(sha(image), before, 'the image is unchanged');
});

t.test('--json', async (t) => {
  const image = small(t);
  const r = await cli('check', '--json', image);
  t.equal(r.code, 0);
  t.equal(r.out.length, 1);
  const j = JSON.parse(r.out[0]!) as Record<string, unknown>;
  t.equal(j.clean, true);
  t.same(j.problems, []);
  t.equal(j.ags, 2);
  t.equal(j.blocks, 4096);
  t.ok((j.freeBlocks as number) > 3000, 'free blocks');
  t.ok((j.rmapRecords as number) >= 8, 'rmap records');
  t.type(j.seconds, 'number');
});

t.test('a dirty journal is replayed in memory only', async (t) => {
  const image = small(t);
  const f = Filesystem.open(image); // marks the superblock dirty in a logged transaction
  f.abandon(); // crash: the transaction is in the log only
  const before = sha(image);
  const r = await cli('check', image);
  t.equal(r.code, 0, r.out.join('\n'));
  t.match(r.out[0], /^journal: 1 committed transaction \(\d+ blocks?\) replayed in memory$/);
  t.equal(sha(image), before, 'nothing written');
  const j = JSON.parse((await cli('check', '--json', image)).out[0]!) as { replayedTransactions: number; clean: boolean };
  t.same([j.clean, j.replayedTransactions], [true, 1]);
  const info = JSON.parse((await cli('info', '--json', image)).out[0]!) as { state: string };
  t.equal(info.state, 'dirty', 'info sees the replayed superblock');
});

t.test('operational errors exit 8 with one line', async (t) => {
  const missing = scratchPath('missing.img');
  const r = await cli('check', missing);
  t.equal(r.code, 8);
  t.equal(r.err.length, 1);
  t.match(r.err[0], /^rmapfs: cannot open .*no such file or directory/);
  t.same(r.out, []);

  const zeros = scratchPath('zeros.img');
  t.teardown(() => fs.rmSync(zeros, { force: true }));
  fs.writeFileSync(zeros, Buffer.alloc(4 << 20));
  const z = await cli('check', zeros);
  t.equal(z.code, 8, 'zeros: not an rmapfs');
  t.equal(z.err.length, 1);
  t.match(z.err[0], /not an rmapfs filesystem/);

  const text = scratchPath('text.img');
  t.teardown(() => fs.rmSync(text, { force: true }));
  fs.writeFileSync(text, 'hello\n'.repeat(10000));
  t.equal((await cli('check', text)).code, 8, 'a text file');

  const j = await cli('check', '--json', missing);
  t.equal(j.code, 8);
  const parsed = JSON.parse(j.out[0]!) as { clean: boolean; error: string };
  t.equal(parsed.clean, false);
  t.match(parsed.error, /no such file/);
});

t.test('usage errors exit 16 (as fsck)', async (t) => {
  for (const argv of [['check'], ['check', '--bogus', 'x'], ['check', 'a', 'b']]) {
    const r = await cli(...argv);
    t.equal(r.code, 16, argv.join(' '));
    t.equal(r.err.length, 1);
  }
  const h = await cli('check', '--help');
  t.equal(h.code, 0);
  t.match(h.out.join('\n'), /exit status \(as fsck\)/);
});

t.test('checkFilesystem checks the structures it is given; a checker bug is an internal error', (t) => {
  const image = small(t);
  const f = Filesystem.open(image, { readOnly: true });
  t.teardown(() => f.close());
  const sbOnly = checkFilesystem(f, { types: ['superblock', 'secondary-sb'] });
  t.same(sbOnly.problems, []);
  t.equal(sbOnly.agsChecked, 0, 'no AG scrub for the superblocks alone');
  // A source whose reads fail with a TypeError: a bug in a checker, not damage.
  const broken = { geo: f.geo, alloc: f.alloc, device: f.device, superblock: () => f.superblock(),
    cache: { read: () => { throw new TypeError('a bug'); } } } as unknown as ScrubSource;
  const problems = new ProblemList();
  const totals = runToEnd(checkStructures(broken, ['superblock'], null, problems));
  t.same(problems.problems, []);
  t.same(totals.internalErrors, ['superblock: a bug'], 'a checker bug is an internal error, not a problem');
  const all = checkFilesystem(f);
  t.same(all.problems, []);
  t.equal(all.agsChecked, 2);
  t.end();
});

t.test('the real command: exit statuses and no stack traces', (t) => {
  const image = small(t);
  const help = spawn('--help');
  t.equal(help.status, 0);
  for (const c of ['mkfs', 'check', 'info', 'db']) t.match(help.stdout, new RegExp(`^  ${c} `, 'm'), `--help lists ${c}`);
  const clean = spawn('check', image);
  t.equal(clean.status, 0, clean.stderr);
  t.match(clean.stdout, /clean/);
  const missing = spawn('check', scratchPath('nope.img'));
  t.equal(missing.status, 8);
  t.equal(missing.stderr.trim().split('\n').length, 1, 'one line');
  t.notMatch(missing.stderr, /\n\s+at /, 'no stack trace');
  const db = spawn('db', image, 'fuzz block 0 2 numrecs ones');
  t.equal(db.status, 0, db.stderr);
  const bad = spawn('check', image);
  t.equal(bad.status, 4, 'corruption: 4');
  t.match(bad.stdout, /^bnobt \(AG 0 block 2\): /m);
  t.notMatch(bad.stdout + bad.stderr, /\n\s+at /);
  const usage = spawn('mkfs', '--bogus');
  t.equal(usage.status, 2);
  t.match(usage.stderr, /^rmapfs: unknown option '--bogus'/);
  t.end();
});

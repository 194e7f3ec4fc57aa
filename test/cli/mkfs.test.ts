/**
 * `rmapfs mkfs`: makes images of the size asked for; refuses to overwrite a
 * filesystem or another signature without --force (leaving it intact);
 * refuses devices too small; one-line errors, exit 1 for refusals and 2 for
 * usage errors.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as fs from 'fs';
import { cli } from './cli';
import { scratchPath } from '../lib/trees';

function scratch(t: Test, name = 'mkfs.img'): string {
  const p = scratchPath(name);
  t.teardown(() => fs.rmSync(p, { force: true }));
  return p;
}

async function uuidOf(image: string): Promise<string> {
  const r = await cli('info', '--json', image);
  return (JSON.parse(r.out[0]!) as { uuid: string }).uuid;
}

t.test('mkfs --size creates an image and prints a summary', async (t) => {
  const image = scratch(t);
  const r = await cli('mkfs', '--size', '16M', '--ag-count', '2', '--label', 'hello', image);
  t.equal(r.code, 0, r.err.join('\n'));
  t.same(r.err, []);
  t.equal(fs.statSync(image).size, 16 << 20, 'the image has the size asked for');
  const text = r.out.join('\n');
  t.match(text, /16 MiB, 4096 blocks of 4096 bytes/);
  t.match(text, /2 AGs x 2048 blocks, log 256 blocks at block \d+/);
  t.match(text, /uuid [0-9a-f-]{36}, label 'hello'/);
  t.equal((await cli('check', image)).code, 0, 'check: clean');
  const info = await cli('info', '--json', image);
  t.equal((JSON.parse(info.out[0]!) as { label: string }).label, 'hello');
});

t.test('--size=VALUE, -s, --ag-size and sizes with suffixes', async (t) => {
  const a = scratch(t, 'a.img');
  t.equal((await cli('mkfs', `--size=${32 * 1024}K`, '--ag-size=8M', a)).code, 0);
  const j = JSON.parse((await cli('info', '--json', a)).out[0]!) as { agCount: number; agBlocks: number };
  t.same([j.agCount, j.agBlocks], [4, 2048], '32 MiB in 8 MiB AGs');
  const b = scratch(t, 'b.img');
  t.equal((await cli('mkfs', '-s', '16M', b)).code, 0);
  t.equal(fs.statSync(b).size, 16 << 20);
});

t.test('an existing rmapfs is refused without --force, and left intact', async (t) => {
  const image = scratch(t);
  t.equal((await cli('mkfs', '--size', '16M', image)).code, 0);
  const before = await uuidOf(image);
  const r = await cli('mkfs', image);
  t.equal(r.code, 1, 'refused');
  t.equal(r.err.length, 1, 'one line');
  t.match(r.err[0], /^rmapfs: .*holds an rmapfs filesystem; use --force/);
  t.same(r.out, []);
  t.equal((await cli('check', image)).code, 0, 'still checks clean');
  t.equal(await uuidOf(image), before, 'same filesystem');
  const again = await cli('mkfs', '--size', '16M', image);
  t.equal(again.code, 1, 'also with --size of the same size');
  const forced = await cli('mkfs', '--force', image);
  t.equal(forced.code, 0, forced.err.join('\n'));
  t.not(await uuidOf(image), before, '--force made a new one');
  t.equal((await cli('check', image)).code, 0);
});

t.test('an ext4 signature is refused without --force', async (t) => {
  const image = scratch(t);
  const data = Buffer.alloc(16 << 20);
  data.writeUInt16LE(0xef53, 1080);
  fs.writeFileSync(image, data);
  const r = await cli('mkfs', image);
  t.equal(r.code, 1);
  t.equal(r.err.length, 1);
  t.match(r.err[0], /ext2\/ext3\/ext4 signature; use --force/);
  t.equal(fs.readFileSync(image).readUInt16LE(1080), 0xef53, 'untouched');
  t.equal((await cli('mkfs', '-f', image)).code, 0, 'with --force');
  t.equal((await cli('check', image)).code, 0);
});

t.test('too small, bad sizes and bad geometry are refused (exit 1)', async (t) => {
  const image = scratch(t);
  const small = await cli('mkfs', '--size', '64K', image);
  t.equal(small.code, 1);
  t.equal(small.err.length, 1);
  t.match(small.err[0], /^rmapfs: .*too small/);
  t.notOk(fs.existsSync(image), 'the image mkfs created is removed again');
  const zero = await cli('mkfs', '--size', '0', image);
  t.equal(zero.code, 1);
  t.match(zero.err[0], /bad size 0/);
  const missing = await cli('mkfs', image);
  t.equal(missing.code, 1, 'no image and no --size');
  t.match(missing.err[0], /does not exist \(give --size/);
  const label = await cli('mkfs', '--size', '16M', '--label', 'x'.repeat(40), image);
  t.equal(label.code, 1);
  t.match(label.err[0], /longer than 32 bytes/);
  t.notOk(fs.existsSync(image));
  const tinyAg = await cli('mkfs', '--size', '16M', '--ag-size', '64K', image);
  t.equal(tinyAg.code, 1);
  t.match(tinyAg.err[0], /too small/);
});

t.test('usage errors exit 2 with one line', async (t) => {
  const image = scratch(t);
  for (const argv of [
    ['mkfs', '--bogus', image],
    ['mkfs', '--size', '12Q', image],
    ['mkfs', '--size'],
    ['mkfs'],
    ['mkfs', image, 'extra'],
    ['mkfs', '--size', '16M', '--ag-count', '2', '--ag-size', '8M', image],
    ['mkfs', '--ag-count', 'two', '--size', '16M', image],
    ['mkfs', '--force=yes', image],
  ]) {
    const r = await cli(...argv);
    t.equal(r.code, 2, `${argv.join(' ')}: exit 2`);
    t.equal(r.err.length, 1, 'one line');
    t.match(r.err[0], /^rmapfs: /);
  }
  t.notOk(fs.existsSync(image), 'nothing was made');
  const help = await cli('mkfs', '--help');
  t.equal(help.code, 0);
  t.match(help.out.join('\n'), /usage: rmapfs mkfs/);
});

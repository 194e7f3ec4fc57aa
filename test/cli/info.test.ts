/** `rmapfs info`: the geometry and per-AG usage, as text and JSON. */
import t from 'tap';
import * as fs from 'fs';
import { cli } from './cli';
import { scratchImage } from '../lib/fs';
import { scratchPath } from '../lib/trees';

t.test('info prints the geometry and one line per AG', async (t) => {
  const image = scratchImage(t, { size: 16 << 20, agCount: 2, label: 'infotest' });
  const r = await cli('info', image);
  t.equal(r.code, 0, r.err.join('\n'));
  const text = r.out.join('\n');
  t.match(text, /16 MiB \(4096 blocks of 4096 bytes\)/);
  t.match(text, /label\s+'infotest'/);
  t.match(text, /AGs\s+2 x 2048 blocks/);
  t.match(text, /log\s+blocks \d+\.\.\d+ \(256 blocks\)/);
  t.match(text, /uuid\s+[0-9a-f]{8}-[0-9a-f]{4}-/);
  t.match(text, /state\s+clean/);
  const header = r.out.findIndex((l) => /^\s*AG\s+start\s+blocks\s+free/.test(l));
  t.ok(header >= 0, 'a table header');
  t.match(r.out[header + 1], /^\s*0\s+0\s+2048\s+\d+/, 'AG 0');
  t.match(r.out[header + 2], /^\s*1\s+2048\s+2048\s+\d+/, 'AG 1');
  t.match(r.out[header + 3], /^\s*total\s+4096/, 'totals');
  t.match(r.out[header + 1], /1\/1\/\d+/, 'btree height/blocks/records');
});

t.test('info --json', async (t) => {
  const image = scratchImage(t, { size: 16 << 20, agCount: 2 });
  const r = await cli('info', '--json', image);
  t.equal(r.code, 0);
  t.equal(r.out.length, 1, 'one line');
  const j = JSON.parse(r.out[0]!) as {
    totalBlocks: number; agCount: number; agBlocks: number; logBlocks: number; state: string; blockSize: number;
    ags: { agno: number; length: number; freeBlocks: number; agflCount: number; btrees: Record<string, { height: number; blocks: number; records: number }> }[];
    totals: { freeBlocks: number };
  };
  t.equal(j.totalBlocks, 4096);
  t.equal(j.agCount, 2);
  t.equal(j.agBlocks, 2048);
  t.equal(j.blockSize, 4096);
  t.equal(j.logBlocks, 256);
  t.equal(j.state, 'clean');
  t.equal(j.ags.length, 2);
  t.equal(j.ags[1]!.length, 2048);
  t.equal(j.ags[1]!.btrees.rmap!.height, 1);
  t.ok(j.ags[1]!.btrees.rmap!.records >= 4, 'AG 1 rmap: sb+agh, btree roots, inobt root, free list');
  t.equal(j.totals.freeBlocks, j.ags[0]!.freeBlocks + j.ags[1]!.freeBlocks);
  t.ok(j.ags.every((a) => a.agflCount > 0), 'every AG has a stocked free list');
});

t.test('info on what is not an rmapfs', async (t) => {
  const p = scratchPath('zero.img');
  t.teardown(() => fs.rmSync(p, { force: true }));
  fs.writeFileSync(p, Buffer.alloc(1 << 20));
  const r = await cli('info', p);
  t.equal(r.code, 1);
  t.equal(r.err.length, 1);
  t.match(r.err[0], /^rmapfs: .*not an rmapfs/);
  t.equal((await cli('info')).code, 2, 'no device: usage');
  t.equal((await cli('info', '--help')).code, 0);
});

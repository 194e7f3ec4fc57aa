/**
 * `rmapfs db`: reads structures by name; set and fuzz damage one field of
 * one structure (recomputing the crc, or with --keep-crc not), and check
 * then finds it, naming the structure -- one case per structure type.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as crypto from 'crypto';
import * as fs from 'fs';
import { cli, db, fields } from './cli';
import { Filesystem } from '../../src/fs/filesystem';
import { scratchImage } from '../lib/fs';
import { scratchPath } from '../lib/trees';

function small(t: Test): string {
  return scratchImage(t, { size: 16 << 20, agCount: 2 });
}

function sha(p: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
}

/** AG-relative roots of AG agno's trees, from the filesystem itself. */
function roots(image: string, agno: number): Record<'bno' | 'cnt' | 'rmap' | 'ino', number> {
  const f = Filesystem.open(image, { readOnly: true });
  try {
    const ag = f.alloc.ags[agno]!;
    return {
      bno: ag.bno.storage.getRoot().ptr, cnt: ag.cnt.storage.getRoot().ptr,
      rmap: ag.rmap.storage.getRoot().ptr, ino: ag.ino.storage.getRoot().ptr,
    };
  } finally {
    f.close();
  }
}


t.test('read commands', async (t) => {
  const image = small(t);
  const before = sha(image);
  const sb = await db(t, image, 'sb');
  t.match(sb.out[0], /^AG 0 superblock \(primary\), block 0, crc ok$/);
  const f = fields(sb.out);
  t.equal(f.get('magic'), 'RMSB (0x524d5342)');
  t.equal(f.get('agCount'), '2');
  t.equal(f.get('agBlocks'), '2048');
  const sb1 = fields((await db(t, image, 'sb 1')).out);
  t.equal(sb1.get('blkno'), '2048', 'AG 1 copy');
  t.equal(sb1.get('uuid'), f.get('uuid'));

  const agh = await db(t, image, 'agh', '1');
  t.match(agh.out[0], /^AG 1 header, block 2049, crc ok$/);
  const h = fields(agh.out);
  t.equal(h.get('agno'), '1');
  t.match(agh.out.find((l) => l.startsWith('agfl = ')), /^agfl = \[\d+(, \d+)*\]$/);

  const r = roots(image, 0);
  const bt = await db(t, image, 'btree 0 rmap');
  t.match(bt.out[0], new RegExp(`^AG 0 rmapbt: root ${r.rmap}, height 1 `));
  t.match(bt.out.join('\n'), /level 0: 1 block\n  block \d+: numrecs \d+, leftsib null, rightsib null, .*crc ok/);

  const blk = await db(t, image, `block 0 bno ${r.bno}`);
  t.match(blk.out[0], new RegExp(`^AG 0 block ${r.bno} \\(fsbno ${r.bno}\\): bnobt, crc ok$`));
  t.match(blk.out.join('\n'), /^rec\[0\] = \[\d+\+\d+\]$/m);
  const inferred = await db(t, image, `block 0 ${r.rmap}`);
  t.match(inferred.out[0], /rmapbt/, 'tree type from the magic');
  t.match(inferred.out.join('\n'), /^rec\[0\] = \[0\+2\] owner 1 offset 0$/m, 'the rmap starts with the static fs metadata');

  const recs = await db(t, image, 'records 0 rmap --limit 2');
  t.same(recs.out.slice(0, 2), ['[0+2] owner 1 offset 0', '[2+3] owner 3 offset 0']);
  t.equal(recs.out[2], '(stopped after 2 records)');
  const all = await db(t, image, 'records', '1', 'cnt');
  t.match(all.out[0], /^\[\d+\+\d+\]$/);

  const hex = await db(t, image, 'hexdump 0 0 16');
  t.same(hex.out, ['0000: 52 4d 53 42 00 00 00 01 00 00 00 00 00 00 10 00  RMSB............']);
  const several = await db(t, image, 'sb', ';', 'agh', '0');
  t.match(several.out.join('\n'), /^AG 0 superblock[^]*^AG 0 header/m, "';' separates commands");
  const dashC = await cli('db', '-c', 'sb 1', '--command=agh 1', image, 'sb');
  t.equal(dashC.code, 0);
  t.same(dashC.out.filter((l) => l.startsWith('AG ')).map((l) => l.replace(/,.*/, '')),
    ['AG 1 superblock', 'AG 1 header', 'AG 0 superblock (primary)'], '-c commands first, in order');
  t.equal(sha(image), before, 'read commands write nothing');
});

t.test('db refuses what it cannot do, in one line', async (t) => {
  const image = small(t);
  const zeros = scratchPath('zeros.img');
  t.teardown(() => fs.rmSync(zeros, { force: true }));
  fs.writeFileSync(zeros, Buffer.alloc(1 << 20));
  const cases: [string[], number, RegExp][] = [
    [['db', zeros, 'sb'], 1, /not an rmapfs filesystem/],
    [['db', zeros, 'set sb 0 agCount 3'], 1, /not an rmapfs filesystem/],
    [['db', image, 'agh 9'], 1, /AG 9 is past the end/],
    [['db', image, 'set sb 0 nosuch 1'], 1, /has no field 'nosuch'/],
    [['db', image, 'set block 0 4 rec[0].nosuch 1'], 1, /record has no field 'nosuch' \(startblock, blockcount, owner, offset, flags\)/],
    [['db', image, 'set block 0 4 key[0].startblock 1'], 1, /is a leaf/],
    [['db', image, 'set block 0 4 rec[999].owner 1'], 1, /holds at most 168/],
    [['db', image, 'set agh 0 freeBlocks 99999999999'], 1, /does not fit in 32 bits/],
    [['db', image, 'fuzz agh 0 freeBlocks sideways'], 1, /unknown fuzz verb/],
    [['db', image, 'block 0 nosuchtree 4'], 1, /unknown btree/],
    [['db', image, 'frobnicate'], 2, /unknown db command 'frobnicate'/],
    [['db', image, 'agh'], 2, /usage: agh AGNO/],
    [['db', image], 2, /no command given/],
    [['db', '--bogus', image, 'sb'], 2, /unknown option/],
    [['db', scratchPath('missing.img'), 'sb'], 1, /no such file/],
  ];
  for (const [argv, code, pattern] of cases) {
    const r = await cli(...argv);
    t.equal(r.code, code, `${argv.slice(2).join(' ')}: exit ${code}`);
    t.equal(r.err.length, 1, 'one line');
    t.match(r.err[0], pattern);
  }
  const hex = await cli('db', zeros, 'hexdump 3 0 16');
  t.equal(hex.code, 0, 'hexdump works on anything');
  t.match(hex.out[0], /^0000: 00 00/);
  t.equal((await cli('check', image)).code, 0, 'the failed commands changed nothing');
  const help = await cli('db', '--help');
  t.equal(help.code, 0);
  t.match(help.out.join('\n'), /firstbit/);
});

t.test('set recomputes the crc: a harmless change still checks clean', async (t) => {
  const image = small(t);
  const r = await db(t, image, 'set sb 0 mountCount 5', "set sb 0 label 'my disk'", 'set sb 1 label "my disk"');
  t.match(r.out[0], /^AG 0 superblock: mountCount \d+ -> 5$/);
  t.match(r.out[1], /^AG 0 superblock: label "" -> "my disk"$/);
  const c = await cli('check', image);
  t.equal(c.code, 0, c.out.join('\n'));
  const info = JSON.parse((await cli('info', '--json', image)).out[0]!) as { mountCount: number; label: string };
  t.same([info.mountCount, info.label], [5, 'my disk']);
});

t.test('fuzz verbs change the field as xfs_db does', async (t) => {
  const image = small(t);
  const value = async (): Promise<number> => Number(fields((await db(t, image, 'agh 1')).out).get('longest'));
  const v = await value();
  const expect: [string, number][] = [
    ['firstbit', (v ^ 0x80000000) >>> 0], ['middlebit', (v ^ 0x8000) >>> 0], ['lastbit', (v ^ 1) >>> 0],
    ['add', v + 1], ['sub', v - 1], ['zeroes', 0], ['ones', 0xffffffff],
  ];
  for (const [verb, want] of expect) {
    await db(t, image, `set agh 1 longest ${v}`);
    await db(t, image, `fuzz agh 1 longest ${verb}`);
    t.equal(await value(), want, verb);
  }
  await db(t, image, `set agh 1 longest ${v}`);
  await db(t, image, 'fuzz agh 1 longest random');
  t.not(await value(), v, 'random: another value');
  await db(t, image, `set agh 1 longest ${v}`);
  t.equal((await cli('check', image)).code, 0, 'put back: clean again');
});

interface Damage {
  what: string;
  cmd: (r: Record<'bno' | 'cnt' | 'rmap' | 'ino', number>) => string;
  structure: RegExp;
}

const damages: Damage[] = [
  { what: 'primary superblock agCount', cmd: () => 'set sb 0 agCount 7', structure: /superblock/ },
  { what: 'primary superblock magic', cmd: () => 'fuzz sb 0 magic zeroes', structure: /superblock/ },
  { what: 'secondary superblock agBlocks', cmd: () => 'set sb 1 agBlocks 1000', structure: /^superblock \(AG 1 block 2048\): secondary/m },
  { what: 'secondary superblock label', cmd: () => 'set sb 1 label other', structure: /^superblock \(AG 1 block 2048\): secondary: label "other"/m },
  { what: 'secondary superblock uuid', cmd: () => 'fuzz sb 1 uuid random', structure: /^superblock \(AG 1 block 2048\): secondary: .*another filesystem/m },
  { what: 'AG header freeBlocks', cmd: () => 'set agh 0 freeBlocks 5', structure: /^AG header \(AG 0 block 1\): free blocks 5/m },
  { what: 'AG header freeExtents', cmd: () => 'fuzz agh 1 freeExtents add', structure: /^AG header \(AG 1 block 2049\): free extents 2/m },
  { what: 'AG header rmapRecords', cmd: () => 'fuzz agh 1 rmapRecords sub', structure: /^AG header \(AG 1 block 2049\): rmap btree has \d+ records/m },
  { what: 'AG header agno', cmd: () => 'set agh 1 agno 0', structure: /^AG header \(AG 1 block 2049\): .*says it is AG 0/m },
  { what: 'bnobt rec[0].startblock', cmd: (r) => `fuzz block 0 ${r.bno} rec[0].startblock add`, structure: /^bnobt \(AG 0\): free extent/m },
  { what: 'bnobt numrecs', cmd: (r) => `fuzz block 1 ${r.bno} numrecs ones`, structure: /^bnobt \(AG 1 block \d+\): .*records/m },
  { what: 'cntbt numrecs', cmd: (r) => `set block 0 ${r.cnt} numrecs 0`, structure: /^cntbt \(AG 0\): free extent/m },
  { what: 'cntbt rec[0].blockcount', cmd: (r) => `fuzz block 1 ${r.cnt} rec[0].blockcount firstbit`, structure: /^cntbt \(AG 1\)/m },
  { what: 'rmap rec[0].blockcount', cmd: (r) => `set block 0 ${r.rmap} rec[0].blockcount 1`, structure: /^rmap \(AG 0 block 0\): fs metadata at 0\+2 is not mapped/m },
  { what: 'rmap rec[1].owner', cmd: (r) => `set block 1 ${r.rmap} rec[1].owner 99`, structure: /^rmap \(AG 1 block \d+\): /m },
  { what: 'rmap leftsib', cmd: (r) => `set block 0 ${r.rmap} leftsib 7`, structure: /^rmap \(AG 0 block \d+\): .*left sibling 7/m },
  { what: 'inobt magic', cmd: (r) => `fuzz block 0 ${r.ino} magic ones`, structure: /^inobt \(AG 0 block \d+\): .*bad magic/m },
  { what: 'inobt level', cmd: (r) => `set block 1 ${r.ino} level 1`, structure: /^inobt \(AG 1 block \d+\)/m },
];

for (const d of damages) {
  t.test(`damage caught: ${d.what}`, async (t) => {
    const image = small(t);
    const r = roots(image, 0);
    const r1 = roots(image, 1);
    t.same(r1, r, 'both AGs have their roots in the same places');
    await db(t, image, d.cmd(r));
    const c = await cli('check', image);
    t.equal(c.code, 4, 'check: corruption');
    t.match(c.out.join('\n'), d.structure, 'names the structure');
    t.match(c.out[c.out.length - 1], /^rmapfs check: /, 'ends with the summary');
  });
}

t.test('--keep-crc leaves the crc: check reports a bad checksum', async (t) => {
  const image = small(t);
  const r = roots(image, 0);
  const keep = await db(t, image, `set block 0 ${r.rmap} rec[0].blockcount 3 --keep-crc`);
  t.match(keep.out[0], /rec\[0\]\.blockcount 2 -> 3 \(crc kept\)/);
  t.match((await db(t, image, `block 0 rmap ${r.rmap}`)).out[0], /crc BAD \(stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}\)/);
  let c = await cli('check', image);
  t.equal(c.code, 4);
  t.match(c.out.join('\n'), /^rmap \(AG 0 block \d+\): .*bad crc32c/m);
  await db(t, image, `set block 0 ${r.rmap} rec[0].blockcount 2`);
  t.equal((await cli('check', image)).code, 0, 'set back (crc recomputed): clean');

  await cli('db', '--keep-crc', image, 'fuzz agh 1 longest lastbit');
  c = await cli('check', image);
  t.equal(c.code, 4, 'global --keep-crc');
  t.match(c.out.join('\n'), /^AG header \(AG 1 block 2049\): .*bad crc32c/m);

  const image2 = small(t);
  await db(t, image2, 'fuzz sb 1 crc firstbit');
  c = await cli('check', image2);
  t.equal(c.code, 4, 'fuzzing the crc itself');
  t.match(c.out.join('\n'), /^superblock \(AG 1 block 2048\): secondary: .*bad crc32c/m);
});

t.test('node blocks: keys and pointers, shown and damaged', async (t) => {
  const image = small(t);
  const f = Filesystem.open(image);
  for (let i = 0; i < 400; i++) {
    // Single blocks of different owners: one rmap record each, so the rmap grows a level.
    f.run(() => f.alloc.alloc({ owner: 100000 + i, offset: 0, minLen: 1, maxLen: 1, agno: 0 }));
  }
  const root = f.alloc.ags[0]!.rmap.storage.getRoot();
  f.close();
  t.equal(root.height, 2, 'a two-level rmap');
  const bt = await db(t, image, 'btree 0 rmap');
  t.match(bt.out.join('\n'), /^level 1: 1 block\n  block \d+: numrecs [2-9]/m);
  t.match(bt.out.join('\n'), /^level 0: [2-9] blocks$/m);
  const node = await db(t, image, `block 0 ${root.ptr}`);
  t.match(node.out.join('\n'), /^key\[0\] = startblock 0 owner 1 offset 0 flags 0  ptr\[0\] = \d+$/m);
  const ptr1 = Number(/ptr\[1\] = (\d+)/.exec(node.out.join('\n'))![1]);
  const leaf = await db(t, image, `block 0 rmap ${ptr1}`);
  t.match(leaf.out.join('\n'), /^leftsib\s+= \d+$/m, 'a leaf with a left sibling');

  await db(t, image, `set block 0 ${root.ptr} key[1].startblock 1`);
  let c = await cli('check', image);
  t.equal(c.code, 4);
  t.match(c.out.join('\n'), /^rmap \(AG 0 block \d+\): .*lowest key differs from the key its parent holds/m, 'a node key');
  await db(t, image, `fuzz block 0 ${root.ptr} key[1].startblock sub`, 'fuzz block 0 ' + root.ptr + ' ptr[1] ones');
  c = await cli('check', image);
  t.equal(c.code, 4);
  t.match(c.out.join('\n'), /^rmap \(AG 0 block \d+\): .*pointer 4294967295 to a level 0 block is out of range/m, 'a node pointer');
  const r = await cli('db', image, `set block 0 ${root.ptr} rec[0].owner 5`);
  t.equal(r.code, 1);
  t.match(r.err[0], /is a node \(level 1\)/);
});

t.test('insert and delete: a missing and an extra rmap record, and a node entry', async (t) => {
  const image = small(t);
  const f = Filesystem.open(image);
  for (let i = 0; i < 400; i++) {
    f.run(() => f.alloc.alloc({ owner: 100000 + i, offset: 0, minLen: 1, maxLen: 1, agno: 0 }));
  }
  const root = f.alloc.ags[0]!.rmap.storage.getRoot();
  f.close();
  const node = (await db(t, image, `block 0 ${root.ptr}`)).out.join('\n');
  // The last leaf: the others are half full after the splits, and one record fewer would underfill them.
  const leaf = Number([...node.matchAll(/ptr\[\d+\] = (\d+)/g)].pop()![1]);
  const recs = async (): Promise<string[]> => (await db(t, image, `block 0 ${leaf}`)).out.filter((l) => l.startsWith('rec['));
  const before = await recs();
  const n = before.length;
  // The owners are not files, so check is never clean here: compare with what it says undamaged.
  const baseline = (await cli('check', image)).out.join('\n');

  // A record deleted from the middle of a leaf: the header's count made to agree, so only the cross-checks see it.
  const del = await db(t, image, `delete block 0 ${leaf} rec[5]`);
  t.match(del.out[0], new RegExp(`^AG 0 block ${leaf}: rec\\[5\\] deleted \\(\\[\\d+\\+1\\] owner \\d+ offset 0\\), numrecs ${n} -> ${n - 1}$`));
  const after = await recs();
  t.same(after.map((l) => l.replace(/^rec\[\d+\] = /, '')), before.filter((_, i) => i !== 5).map((l) => l.replace(/^rec\[\d+\] = /, '')), 'the rest moved down');
  await db(t, image, 'fuzz agh 0 rmapRecords sub');
  let c = await cli('check', image);
  t.equal(c.code, 4);
  t.match(c.out.join('\n'), /^coverage \(AG 0 block \d+\): blocks \d+\.\.\d+ are neither free nor in the rmap$/m, 'a missing record');
  t.notMatch(c.out.join('\n'), /btree block|header says/, 'the btree itself is sound');

  // Put it back with insert + set: clean again.
  const old = /^rec\[5\] = \[(\d+)\+1\] owner (\d+)/.exec(before[5]!)!;
  const ins = await db(t, image, `insert block 0 ${leaf} rec[5]`, `set block 0 ${leaf} rec[5].startblock ${old[1]}`,
    `set block 0 ${leaf} rec[5].owner ${old[2]}`, 'fuzz agh 0 rmapRecords add');
  t.match(ins.out[0], new RegExp(`: rec\\[5\\] inserted \\(a copy of rec\\[5\\]\\), numrecs ${n - 1} -> ${n}$`));
  t.same(await recs(), before, 'the leaf is as it was');
  t.equal((await cli('check', image)).out.join('\n'), baseline, 'as before the damage');

  // An extra record at the end of a leaf, claiming free space.
  const free = Number(/^\[(\d+)\+(\d+)\]/.exec((await db(t, image, 'records 0 bno')).out[0]!)![1]);
  await db(t, image, `insert block 0 ${leaf} rec[${n}]`, `set block 0 ${leaf} rec[${n}].startblock ${free}`, 'fuzz agh 0 rmapRecords add');
  c = await cli('check', image);
  t.equal(c.code, 4);
  t.match(c.out.join('\n'), /^coverage \(AG 0 block \d+\): .*overlaps space already accounted for$/m, 'an extra record');
  await db(t, image, `delete block 0 ${leaf} rec[${n}]`, 'fuzz agh 0 rmapRecords sub');
  t.equal((await cli('check', image)).out.join('\n'), baseline, 'deleted again: as before');

  // A node entry: key and pointer go together.
  const del2 = await db(t, image, `delete block 0 ${root.ptr} key[1]`);
  t.match(del2.out[0], /: key\[1\] deleted \(startblock \d+ owner \d+ offset 0 flags 0  ptr \d+\), numrecs \d+ -> \d+$/);
  t.match((await cli('check', image)).out.join('\n'), /^rmap \(AG 0 block \d+\): rmap btree block \d+: left sibling \d+, expected \d+$/m, 'a lost subtree: the sibling chain skips it');

  const refused: [string, RegExp][] = [
    [`delete block 0 ${leaf} rec[999]`, /rec\[999\]: the block holds \d+/],
    [`insert block 0 ${leaf} rec[${n + 5}]`, /an entry goes at \d+ at most/],
    [`insert block 0 ${root.ptr} rec[0]`, /is a node \(level 1\)/],
    [`delete block 0 ${leaf} key[0]`, /is a leaf/],
    [`delete block 0 ${leaf} rec[0].owner`, /takes an entry, rec\[I\]/],
    ['delete block 0 1 rec[0]', /magic RMAG names no btree type/],
    [`delete block 0 ${leaf}`, /usage: delete block AGNO AGBNO \[TREE\] rec\[I\]\|key\[I\]/],
  ];
  for (const [cmd, pattern] of refused) {
    const r = await cli('db', image, cmd);
    t.not(r.code, 0, cmd);
    t.match(r.err[0], pattern);
  }
});

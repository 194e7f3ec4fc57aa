/**
 * `rmapfs db` on files: inodes (fields, inline extents, local data), the
 * btrees rooted in inodes (a file's bmbt, a directory's entries) reached by
 * filesystem block number, and `ls`. One small filesystem is populated
 * through Rmapfs -- a directory of 200 entries (a 2-level btree), a file of
 * 20 one-block extents (a bmbt), a long and a short symlink -- and each case
 * damages one field of a copy of it with db; `check` must then exit 4 and
 * name the structure as the inode scrub reports it.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as crypto from 'crypto';
import * as fs from 'fs';
import { cli, db, fields } from './cli';
import { Rmapfs } from '../../src/fs/rmapfs';
import { S_IFREG } from '../../src/inode/inode-format';
import { scratchCopy, scratchImage } from '../lib/fs';
import { populate, SHORT_TARGET } from '../lib/file-shapes';

const template = scratchImage(t, { size: 16 << 20, agCount: 2 });
const files = populate(template);

/** A fresh copy of the populated filesystem, removed at teardown. */
function copy(t: Test): string {
  return scratchCopy(t, template, 'files.img');
}

function sha(p: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
}


/** The blocks of an inode's btree, per level, from `btree inode INO`. */
async function treeBlocks(t: Test, image: string, ino: number): Promise<Map<number, number[]>> {
  const out = (await db(t, image, `btree inode ${ino}`)).out;
  const levels = new Map<number, number[]>();
  let level = -1;
  for (const l of out) {
    const lv = /^level (\d+):/.exec(l);
    if (lv !== null) level = Number(lv[1]);
    const b = /^ {2}block (\d+):/.exec(l);
    if (b !== null) levels.set(level, [...(levels.get(level) ?? []), Number(b[1])]);
  }
  return levels;
}

/** Where a directory's entry is: its leaf block and record index, found with `fsblock`. */
async function findEntry(t: Test, image: string, dir: number, name: string): Promise<{ fsbno: number; index: number }> {
  for (const fsbno of (await treeBlocks(t, image, dir)).get(0) ?? []) {
    for (const l of (await db(t, image, `fsblock ${fsbno}`)).out) {
      const m = /^rec\[(\d+)\] = (.*) -> inode \d+ \(type \d+\)$/.exec(l);
      if (m !== null && m[2] === name) return { fsbno, index: Number(m[1]) };
    }
  }
  throw new Error(`no entry '${name}' in directory ${dir}`);
}

t.test('the fixture: clean, with the shapes the cases need', async (t) => {
  const c = await cli('check', template);
  t.equal(c.code, 0, c.out.join('\n'));
  const big = await treeBlocks(t, template, files.big);
  t.same([...big.keys()], [1, 0], 'the directory btree has 2 levels');
  t.ok(big.get(0)!.length > 1, `${big.get(0)!.length} leaves`);
  const frag = fields((await db(t, template, `inode ${files.frag}`)).out);
  t.equal(frag.get('format'), '1', 'the fragmented file has a bmbt');
  t.equal(frag.get('nextents'), '20');
  t.equal(fields((await db(t, template, `inode ${files.small}`)).out).get('format'), '0', 'the small file has inline extents');
  t.equal(fields((await db(t, template, `inode ${files.long}`)).out).get('format'), '0', 'the long symlink has an extent');
  t.equal(fields((await db(t, template, `inode ${files.short}`)).out).get('format'), '2', 'the short symlink is local');
  t.equal(fields((await db(t, template, `inode ${files.free}`)).out).get('mode'), '0 (free)', 'a free slot after the last inode');
});

t.test('inode: every field, then the data and attr forks decoded', async (t) => {
  const before = sha(template);
  const small = await db(t, template, `inode ${files.small}`);
  t.match(small.out[0], new RegExp(`^inode ${files.small} \\(AG 0 block (\\d+) slot (\\d), fsbno \\1\\): regular file, crc ok$`));
  const f = fields(small.out);
  t.equal(f.get('magic'), 'RINO (0x52494e4f)');
  t.equal(f.get('mode'), '0100644 (regular file)', 'mode in octal, with its type');
  t.equal(f.get('ino'), String(files.small));
  t.equal(f.get('nlink'), '1');
  t.equal(f.get('size'), String(5 * 4096));
  t.equal(f.get('nblocks'), '3');
  t.match(f.get('crc'), /^0x[0-9a-f]{8}$/);
  t.match(f.get('uuid'), /^[0-9a-f]{8}-/);
  for (const name of ['version', 'uid', 'gid', 'flags', 'atime', 'mtime', 'ctime', 'crtime', 'lsn', 'generation', 'dataRoot',
    'dataHeight', 'attrFormat', 'attrLocal', 'attrRoot', 'attrHeight', 'rdev']) {
    t.ok(f.has(name), `field ${name}`);
  }
  const text = small.out.join('\n');
  t.match(text, /^data fork: extents, 3 in the inode$/m);
  t.match(text, /^ext\[0\] = fileoff 0 blockcount 1 fsbno \d+ unwritten 0\next\[1\] = fileoff 2 blockcount 1 fsbno \d+ unwritten 0\next\[2\] = fileoff 4 /m);
  t.match(text, /^attr fork: none$/m);

  const short = (await db(t, template, `inode ${files.short}`)).out.join('\n');
  t.match(short, /\): symlink, crc ok/);
  t.match(short, new RegExp(`^data fork: local, ${SHORT_TARGET.length} bytes: "${SHORT_TARGET}"$`, 'm'), 'the symlink target');
  const frag = (await db(t, template, `inode ${files.frag}`)).out.join('\n');
  t.match(frag, new RegExp(`^data fork: bmbt btree, root \\d+, height 1, 20 records`, 'm'), 'the bmbt root and height');
  const big = (await db(t, template, `inode ${files.big}`)).out.join('\n');
  t.match(big, /\): directory, crc ok/);
  t.match(big, /^data fork: dirbt btree, root \d+, height 2, 201 records/m, 'entries and ".."');
  const free = (await db(t, template, `inode ${files.free}`)).out;
  t.match(free[0], /: free, crc ok$/);

  const recs = await db(t, template, `records inode ${files.small}`);
  t.same(recs.out.map((l) => l.replace(/ at \d+/, '')), ['[0+1]', '[2+1]', '[4+1]'], 'records inode: the inline extents');
  const bm = await db(t, template, `records inode ${files.frag} --limit 3`);
  t.same(bm.out.map((l) => l.replace(/ at \d+/, '')), ['[0+1]', '[2+1]', '[4+1]', '(stopped after 3 records)'], 'and a bmbt\'s');
  t.equal(sha(template), before, 'read commands write nothing');
});

t.test('fsblock, btree inode, ls: the btrees rooted in inodes', async (t) => {
  const before = sha(template);
  const frag = await treeBlocks(t, template, files.frag);
  const [bmbt] = frag.get(0)!;
  const leaf = await db(t, template, `fsblock ${bmbt}`);
  t.match(leaf.out[0], new RegExp(`^block ${bmbt} \\(AG \\d+ block \\d+\\): bmbt, crc ok$`));
  const lf = fields(leaf.out);
  t.equal(lf.get('magic'), 'BMA3 (0x424d4133)');
  t.equal(lf.get('owner'), String(files.frag), 'owned by the inode');
  t.equal(lf.get('numrecs'), '20');
  t.match(leaf.out.join('\n'), /^rec\[1\] = \[2\+1\] at \d+$/m);
  t.match((await db(t, template, `btree inode ${files.frag}`)).out[0],
    new RegExp(`^inode ${files.frag} bmbt: root ${bmbt}, height 1 \\(the inode counts 20 records\\)$`));

  const big = await treeBlocks(t, template, files.big);
  const [node] = big.get(1)!;
  const n = await db(t, template, `fsblock dir ${node}`);
  t.match(n.out[0], /: dirbt, crc ok$/);
  t.match(n.out.join('\n'), /^key\[0\] = hash \d+ cidx \d+ {2}ptr\[0\] = (\d+)$/m, 'node keys: hash and collision index; pointers: fsbnos');
  const ptr0 = Number(/ptr\[0\] = (\d+)/.exec(n.out.join('\n'))![1]);
  t.equal(ptr0, big.get(0)![0], 'ptr[0] is the leftmost leaf');
  t.match((await db(t, template, `fsblock ${ptr0}`)).out.join('\n'), /^rec\[0\] = \S+ -> inode \d+ \(type 8\)$/m);

  const ls = await db(t, template, `ls ${files.big}`);
  t.equal(ls.out[0], `directory ${files.big}: 201 entries (the inode counts 201)`);
  const entries = ls.out.slice(1).map((l) => l.trim().split(/\s+/));
  t.equal(entries.length, 201);
  t.same(entries.find((e) => e[2] === '..'), [String(files.root), 'dir', '..'], '".." is the root');
  t.same(entries.filter((e) => /^file\d+$/.test(e[2]!)).length, 200, 'every file');
  t.ok(entries.every((e) => e[2] === '..' || e[1] === 'reg'));
  const root = (await db(t, template, `ls ${files.root}`)).out.slice(1).map((l) => l.trim().split(/\s+/));
  t.same(root.map((e) => e.slice(1).join(' ')).sort(), ['dir ..', 'dir big', 'lnk long', 'lnk short', 'reg frag', 'reg small', 'reg xattrs']);
  t.same(root.find((e) => e[2] === 'frag')![0], String(files.frag));

  const inodeBlock = Number(/fsbno (\d+)\)/.exec((await db(t, template, `inode ${files.small}`)).out[0]!)![1]);
  const ib = await db(t, template, `fsblock ${inodeBlock}`);
  t.match(ib.out.join('\n'), /^\(an inode block: inodes \d+\.\.\d+; see 'inode INO'\)$/m, 'an inode block is named as such');

  const attrs = (await db(t, template, `inode ${files.xattrs}`)).out.join('\n');
  const attrRoot = Number(/^attr fork: btree, root (\d+), height 1$/m.exec(attrs)![1]);
  const ab = await db(t, template, `fsblock ${attrRoot}`);
  t.match(ab.out[0], /: attrbt, crc ok$/);
  t.equal(fields(ab.out).get('owner'), String(files.xattrs));
  t.match(ab.out.join('\n'), /^rec\[0\] = user\.color = 4 bytes$/m);
  t.equal(sha(template), before, 'read commands write nothing');
});

t.test('db on files refuses what it cannot do, in one line', async (t) => {
  const image = copy(t);
  const [bmbt] = (await treeBlocks(t, image, files.frag)).get(0)!;
  const [dirLeaf] = (await treeBlocks(t, image, files.big)).get(0)!;
  const cases: [string, number, RegExp][] = [
    [`ls ${files.small}`, 1, /data fork is not a btree \(extents\)/],
    [`ls ${files.frag}`, 1, /is not a directory \(its data fork is a bmbt\)/],
    [`records inode ${files.short}`, 1, /holds no records \(local/],
    [`btree inode ${files.small}`, 1, /not a btree/],
    ['btree 0 dir', 1, /dirbt is not an AG btree/],
    ['inode 99999999999', 1, /past the end of the device|past the AG's end/],
    [`set inode ${files.small} nosuch 1`, 1, /the inode has no field 'nosuch' \(magic, mode, .*rdev, attrCount, ext\[I\]\.fileoff\|blockcount\|fsbno\|unwritten\)/],
    [`set inode ${files.small} ext[12].fsbno 1`, 1, /has no field 'ext\[12\]\.fsbno'/],
    [`set inode ${files.small} nlink 4294967296`, 1, /does not fit in 32 bits/],
    [`set fsblock ${dirLeaf} rec[0].nosuch 1`, 1, /a dirbt record has no field 'nosuch' \(hash, cidx, ftype, namelen, ino, name\)/],
    [`set fsblock ${bmbt} rec[0].nosuch 1`, 1, /a bmbt record has no field 'nosuch' \(fileoff, blockcount, fsbno, unwritten\)/],
    [`set fsblock ${bmbt} rec[999].fileoff 1`, 1, /holds at most 252/],
    [`set fsblock ${dirLeaf} rec[0].name ${'n'.repeat(257)}`, 1, /longer than 256 bytes/],
    ['fsblock 99999999', 1, /outside the device/],
    ['set inode 1', 2, /usage: set sb\|agh .* \| set inode INO FIELD VALUE/],
    ['inode', 2, /usage: inode INO/],
  ];
  for (const [cmd, code, pattern] of cases) {
    const r = await cli('db', image, cmd);
    t.equal(r.code, code, `${cmd}: exit ${code}`);
    t.equal(r.err.length, 1, 'one line');
    t.match(r.err[0], pattern);
  }
  t.equal((await cli('check', image)).code, 0, 'the failed commands changed nothing');
  const help = (await cli('db', '--help')).out.join('\n');
  t.match(help, /fsblock \[TREE\] FSBNO/);
  t.match(help, /set inode INO FIELD VALUE/);
  t.match(help, /ls INO/);
});

t.test('set inode recomputes the inode crc; --keep-crc leaves it bad', async (t) => {
  const image = copy(t);
  const r = await db(t, image, `set inode ${files.small} uid 1234`, `set inode ${files.small} mode 0100600`);
  t.same(r.out, [`inode ${files.small}: uid 0 -> 1234`, `inode ${files.small}: mode 0100644 (regular file) -> 0100600 (regular file)`]);
  let c = await cli('check', image);
  t.equal(c.code, 0, `a harmless change checks clean: ${c.out.join('\n')}`);
  const f = Rmapfs.open(image, { readOnly: true });
  const st = f.stat(files.small);
  f.close();
  t.same([st.uid, st.mode], [1234, S_IFREG | 0o600], 'and the filesystem sees it');

  const keep = await db(t, image, `fuzz inode ${files.small} gid lastbit --keep-crc`);
  t.equal(keep.out[0], `inode ${files.small}: gid 0 -> 1 (crc kept)`);
  t.match((await db(t, image, `inode ${files.small}`)).out[0], /crc BAD \(stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}\)$/);
  c = await cli('check', image);
  t.equal(c.code, 4);
  t.match(c.out.join('\n'), new RegExp(`^inode \\(AG 0 block \\d+\\): inode ${files.small}: .*bad crc32c`, 'm'));
  await db(t, image, `set inode ${files.small} gid 0`);
  t.equal((await cli('check', image)).code, 0, 'set back (crc recomputed): clean');
});

interface Damage {
  what: string;
  /** The db commands, given a copy of the fixture. */
  cmds: (t: Test, image: string) => Promise<string[]>;
  /** What check must say (each). */
  says: RegExp[];
}

const ino = (n: number): string => String(n);
const problem = (structure: string, inode: number, text: string): RegExp =>
  new RegExp(`^${structure} \\(AG \\d+ block \\d+\\): inode ${inode}: ${text}`, 'm');

async function inlineExtent(t: Test, image: string, inode: number, i: number): Promise<number> {
  const line = (await db(t, image, `inode ${inode}`)).out.find((l) => l.startsWith(`ext[${i}] = `))!;
  return Number(/fsbno (\d+)/.exec(line)![1]);
}

async function bmbtLeaf(t: Test, image: string): Promise<number> {
  return (await treeBlocks(t, image, files.frag)).get(0)![0]!;
}

const damages: Damage[] = [
  {
    what: 'inode nlink',
    cmds: async () => [`set inode ${files.small} nlink 5`],
    says: [problem('inode', files.small, 'link count 5, found 1')],
  },
  {
    what: 'inode size (blocks past EOF)',
    cmds: async () => [`set inode ${files.frag} size 4096`],
    says: [problem('inode', files.frag, 'blocks mapped up to file block 39, past the end of file \\(size 4096')],
  },
  {
    what: 'inode mode (unknown file type)',
    cmds: async () => [`set inode ${files.small} mode 0170644`],
    // The entry's file type fits the forks, the inode's does not: the inode is blamed, not the directory.
    says: [problem('inode', files.small, 'unknown file type 170000'),
      problem('inode', files.small, "file type unknown \\(170000\\), its directory entry 'small' says regular file")],
  },
  {
    what: 'inode magic with --keep-crc (bad crc)',
    cmds: async () => [`fuzz inode ${files.small} magic ones --keep-crc`],
    says: [problem('inode', files.small, `inode ${ino(files.small)} \\(block \\d+\\): bad crc32c`)],
  },
  {
    what: 'inode magic, crc recomputed',
    cmds: async () => [`set inode ${files.small} magic XINO`],
    says: [problem('inode', files.small, '.*bad magic')],
  },
  {
    what: 'inode nblocks',
    cmds: async () => [`fuzz inode ${files.frag} nblocks add`],
    says: [problem('inode', files.frag, 'counts 22 blocks, holds 21')],
  },
  {
    // The next block is free, and the AG's rmap agrees with its free space: the file's map is what is wrong.
    what: 'inline extent fsbno (pointing at free space)',
    cmds: async (t, image) => [`set inode ${files.small} ext[1].fsbno ${(await inlineExtent(t, image, files.small, 1)) + 1}`],
    says: [problem('bmbt', files.small, 'extent at \\d+ \\(file block 2\\) is not in the rmap')],
  },
  {
    what: 'inline extent of the long symlink: fsbno',
    cmds: async () => [`fuzz inode ${files.long} ext[0].fsbno add`],
    says: [problem('rmap', files.long, 'extent at \\d+ \\(file block 0\\)')],
  },
  {
    what: 'bmbt record blockcount grown (rmap mismatch)',
    cmds: async (t, image) => [`set fsblock ${await bmbtLeaf(t, image)} rec[3].blockcount 2`],
    // A sound rmap gives the file the block at that offset over fewer blocks: the block map's damage (its
    // repair from the rmap sets the block count too, so the count is not blamed on its own).
    says: [problem('bmbt', files.frag, 'extent at \\d+ \\(file block 6\\): the rmap says')],
  },
  {
    what: 'bmbt record blockcount zero',
    cmds: async (t, image) => [`set fsblock ${await bmbtLeaf(t, image)} rec[3].blockcount 0`],
    says: [problem('bmbt', files.frag, 'bmbt btree block \\d+: record 3: zero-length extent')],
  },
  {
    what: 'bmbt record fileoff',
    cmds: async (t, image) => [`fuzz fsblock ${await bmbtLeaf(t, image)} rec[3].fileoff sub`],
    says: [problem('bmbt', files.frag, 'extent at \\d+ \\(file block 5\\): the rmap says')],
  },
  {
    what: 'bmbt block owner',
    cmds: async (t, image) => [`set fsblock ${await bmbtLeaf(t, image)} owner ${files.small}`],
    says: [problem('bmbt', files.frag, `bmbt btree block \\d+: owner ${files.small}, want ${files.frag}`)],
  },
  {
    what: 'bmbt block crc kept',
    cmds: async (t, image) => [`fuzz fsblock ${await bmbtLeaf(t, image)} rec[0].fsbno firstbit --keep-crc`],
    says: [problem('bmbt', files.frag, 'bmbt btree block \\d+: bad crc32c')],
  },
  {
    what: 'dir entry ino (to a free inode)',
    cmds: async (t, image) => {
      const e = await findEntry(t, image, files.big, 'file4');
      return [`set fsblock ${e.fsbno} rec[${e.index}].ino ${files.free}`];
    },
    says: [problem('directory', files.big, `entry 'file4' points to inode ${files.free}, which is not in use`),
      /^inode .*: is in use but no directory entry names it|inodes are in use but no directory entry names them: .*\d/m],
  },
  {
    what: 'dir entry name (hash mismatch)',
    cmds: async (t, image) => {
      const e = await findEntry(t, image, files.big, 'file4');
      return [`set fsblock ${e.fsbno} rec[${e.index}].name fileX`];
    },
    says: [problem('directory', files.big, 'dir btree block \\d+: record \\d+: hash of "fileX" is wrong')],
  },
  {
    what: 'dir entry ftype',
    cmds: async (t, image) => {
      const e = await findEntry(t, image, files.root, 'frag');
      return [`set fsblock ${e.fsbno} rec[${e.index}].ftype 4`];
    },
    says: [problem('directory', files.root, "entry 'frag' has file type 4, the inode 8")],
  },
  {
    what: 'dir ".." entry',
    cmds: async (t, image) => {
      const e = await findEntry(t, image, files.big, '..');
      return [`set fsblock ${e.fsbno} rec[${e.index}].ino ${files.frag}`];
    },
    says: [problem('directory', files.big, `"\\.\\." is ${files.frag}, the parent is ${files.root}`)],
  },
  {
    what: 'attr record name (hash mismatch)',
    cmds: async (t, image) => {
      const attrs = (await db(t, image, `inode ${files.xattrs}`)).out.join('\n');
      return [`set fsblock ${/^attr fork: btree, root (\d+)/m.exec(attrs)![1]} rec[0].name user.colox`];
    },
    says: [problem('attr', files.xattrs, 'attr btree block \\d+: record 0: name hash is wrong')],
  },
  {
    what: 'dir node key',
    cmds: async (t, image) => [`fuzz fsblock ${(await treeBlocks(t, image, files.big)).get(1)![0]} key[1].hash add`],
    says: [problem('directory', files.big, 'dir btree block \\d+: lowest key differs from the key its parent holds for it')],
  },
  {
    what: 'dir node pointer',
    cmds: async (t, image) => [`set fsblock ${(await treeBlocks(t, image, files.big)).get(1)![0]} ptr[1] 1`],
    says: [problem('directory', files.big, 'dir btree block \\d+: pointer 1 to a level 0 block is out of range')],
  },
  {
    what: 'directory inode dataHeight',
    cmds: async () => [`set inode ${files.big} dataHeight 1`],
    says: [problem('directory', files.big, 'dir btree block \\d+: level 1, expected 0')],
  },
];

for (const d of damages) {
  t.test(`damage caught: ${d.what}`, async (t) => {
    const image = copy(t);
    await db(t, image, ...await d.cmds(t, image));
    const c = await cli('check', image);
    t.equal(c.code, 4, 'check: corruption');
    for (const re of d.says) t.match(c.out.join('\n'), re, 'names the structure');
    t.match(c.out[c.out.length - 1], /^rmapfs check: \d+ problems? in 2 AGs$/, 'ends with the summary');
  });
}

/** Damage to the fields that only make sense together (counts against what they count, free inodes cleared). */
const gaps: { what: string; cmd: string; todo: string }[] = [
  {
    what: 'local symlink: byte count differs from size',
    cmd: `set inode ${files.short} size 5`,
    todo: 'inode-scrub: a local symlink\'s byte count (nextents) is not compared with its size',
  },
  {
    what: 'local symlink: zero bytes',
    cmd: `set inode ${files.short} nextents 0`,
    todo: 'inode-scrub: a local symlink\'s byte count is not checked to be 1..192 (0: empty target)',
  },
  {
    what: 'local symlink: more bytes than the fork holds',
    cmd: `set inode ${files.short} nextents 500`,
    todo: 'inode-scrub: a local symlink\'s byte count is not checked to be 1..192 (500 > the data fork)',
  },
  {
    what: 'inode version',
    cmd: `set inode ${files.small} version 7`,
    todo: 'neither the inode block verifier nor inode-scrub checks the version (1)',
  },
  {
    what: 'bmbt-format file: nextents',
    cmd: `fuzz inode ${files.frag} nextents sub`,
    todo: 'inode-scrub: a btree-format file\'s nextents is not compared with its bmbt records (20)',
  },
  {
    what: 'directory: nextents',
    cmd: `set inode ${files.big} nextents 5`,
    todo: 'inode-scrub: a directory\'s nextents (entries + 1) is not compared with its btree records (201)',
  },
  {
    what: 'directory: size',
    cmd: `set inode ${files.big} size 12345`,
    todo: 'inode-scrub: a directory\'s size is not checked (always 0)',
  },
  {
    what: 'symlink size past SYMLINK_MAX',
    cmd: `set inode ${files.long} size 9000`,
    todo: 'inode-scrub: a symlink\'s size is not checked against SYMLINK_MAX (4095) nor its one mapped block',
  },
  {
    what: 'free inode with a link count',
    cmd: `set inode ${files.free} nlink 5`,
    todo: 'inode-scrub: a free inode (mode 0) is not checked to be zeroed (nlink 5)',
  },
  {
    what: 'free inode with local format',
    cmd: `set inode ${files.free} format 2`,
    todo: 'inode-scrub: a free inode (mode 0) is not checked to be zeroed (format local)',
  },
];

t.test('inconsistent counts and sizes are caught too', async (t) => {
  for (const g of gaps) {
    const image = copy(t);
    await db(t, image, g.cmd);
    const c = await cli('check', image);
    t.equal(c.code, 4, `${g.what}: check finds it (${g.todo.replace(/^.*?: /, '')})`);
  }
  const image = copy(t);
  const e = await findEntry(t, image, files.big, '..');
  await db(t, image, `set fsblock ${e.fsbno} rec[${e.index}].ftype 8`);
  t.equal((await cli('check', image)).code, 4, '".." entry with a file type other than directory');
});

t.test('ls on a damaged directory: as far as the btree can be walked, flagging bad hashes', async (t) => {
  const image = copy(t);
  const e = await findEntry(t, image, files.big, 'file7');
  await db(t, image, `set fsblock ${e.fsbno} rec[${e.index}].name fileY`);
  let ls = await db(t, image, `ls ${files.big}`);
  t.equal(ls.out.length, 1 + 201);
  t.match(ls.out.join('\n'), /^ +\d+ +reg +fileY {2}\(bad hash\)$/m, 'the renamed entry, flagged');
  const leaves = (await treeBlocks(t, image, files.big)).get(0)!;
  await db(t, image, `fuzz fsblock ${leaves[2]} magic ones`);
  ls = await db(t, image, `ls ${files.big}`);
  t.match(ls.out[ls.out.length - 1], new RegExp(`^warning: level 0: block ${leaves[2]} has magic 0x[0-9a-f]+, not DIR3$`));
  const listed = ls.out.filter((l) => /^ +\d+ /.test(l)).length;
  t.ok(listed > 0 && listed < 201, `the entries before the damaged leaf (${listed})`);
  t.match(ls.out[0], new RegExp(`^directory ${files.big}: ${listed} entries \\(the inode counts 201\\)$`));
});

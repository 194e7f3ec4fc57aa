/**
 * The file pass's look-ups in an rmap copied into memory in one walk of its
 * leaves (RmapIndex) report exactly what the look-ups through the tree
 * (RmapFinder) report, on images whose rmap records and block maps are
 * damaged at random (the damage keeps the rmap's leaves in key order: a tree
 * out of order is never indexed).
 */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { scrubInodes } from '../../src/scrub/inode-scrub';
import { ProblemList, formatProblem } from '../../src/scrub/common';
import { RmapIndex, rmapFind } from '../../src/rmap/rmap';
import { RMAP_REC_SIZE, RMAP_ATTR_FORK, RMAP_BMBT_BLOCK, RMAP_UNWRITTEN } from '../../src/rmap/rmap-btree';
import { OFF_NUMRECS } from '../../src/btree/btree-block';
import { FORK_EXTENTS, DATA_FORK_OFFSET, OFF_I_CRC, decodeExtent, encodeExtent, inodeCrc } from '../../src/inode/inode-format';
import { Model, bystanders, fragmentedFile } from '../lib/damaged-files';
import { Rng, testSeed } from '../lib/rng';
import { scratchImage } from '../lib/fs';

/** The file pass's problems with the rmap of every AG indexed or not. */
function filePass(fsx: Rmapfs, indexed: boolean, sound: boolean): string[] {
  const problems = new ProblemList(100000);
  scrubInodes(fsx.fs, problems, { rmapSound: () => sound, rmapIndexed: () => indexed });
  return problems.problems.map(formatProblem);
}

/** Bytes changed in cached blocks, put back after each case (nothing is written: the scrub reads the cache). */
class Damage {
  private readonly saved: { b: Buffer; off: number; bytes: Buffer }[] = [];

  change(b: Buffer, off: number, len: number, fn: () => void): void {
    this.saved.push({ b, off, bytes: Buffer.from(b.subarray(off, off + len)) });
    fn();
  }

  undo(): void {
    for (const s of this.saved.reverse()) s.bytes.copy(s.b, s.off);
    this.saved.length = 0;
  }
}

/** [leaf buffer, record offset] of every rmap record of an AG, in leaf order. */
function rmapRecordPlaces(fsx: Rmapfs, agno: number): [Buffer, number][] {
  const tree = fsx.fs.alloc.ag(agno).rmap;
  const out: [Buffer, number][] = [];
  tree.visitBlocks((ptr, level) => {
    if (level !== 0) return;
    const b = tree.readBlock(ptr, 0).data;
    for (let i = 0; i < b.readUInt16BE(OFF_NUMRECS); i++) out.push([b, tree.geo.recOffset(i)]);
  });
  out.sort((x, y) => x[0].readUInt32BE(x[1]) - y[0].readUInt32BE(y[1]));
  return out;
}

function damageRmap(fsx: Rmapfs, rng: Rng, damage: Damage, files: number[]): string {
  const agno = rng.int(fsx.fs.geo.agCount);
  const places = rmapRecordPlaces(fsx, agno);
  const i = rng.int(places.length);
  const [b, off] = places[i]!;
  const start = b.readUInt32BE(off);
  const count = b.readUInt32BE(off + 4);
  const nextStart = i + 1 < places.length ? places[i + 1]![0].readUInt32BE(places[i + 1]![1]) : start + count;
  damage.change(b, off, RMAP_REC_SIZE, () => {
    switch (rng.int(6)) {
      case 0: // another owner (a file's, or one off)
        b.writeUInt32BE(rng.int(2) === 0 ? files[rng.int(files.length)]! : b.readUInt32BE(off + 12) + 1, off + 12);
        break;
      case 1: // another file offset
        b.writeUInt32BE(b.readUInt32BE(off + 20) + 1 + rng.int(3), off + 20);
        break;
      case 2: { // a flag flipped
        const flags = [RMAP_UNWRITTEN, RMAP_ATTR_FORK, RMAP_BMBT_BLOCK][rng.int(3)]!;
        b.writeUInt32BE((b.readUInt32BE(off + 16) ^ flags) >>> 0, off + 16);
        break;
      }
      case 3: // shorter, or longer (over the next record)
        b.writeUInt32BE(count > 1 && rng.int(2) === 0 ? count - 1 : count + 1 + rng.int(3), off + 4);
        break;
      case 4: // starts later, still before the next record (key order kept)
        if (start + 1 < nextStart) b.writeUInt32BE(start + 1, off);
        break;
      default: // no blocks
        b.writeUInt32BE(0, off + 4);
    }
  });
  return `rmap AG ${agno} record ${i}`;
}

function damageExtent(fsx: Rmapfs, rng: Rng, damage: Damage, files: number[]): string {
  const ino = files[rng.int(files.length)]!;
  const inode = fsx.inodes.get(ino);
  if (inode.format !== FORK_EXTENTS || inode.nextents === 0) return `inode ${ino} (not an extent list)`;
  const { buf, offset } = inode.dataFork();
  const b = buf.data;
  const inodeOff = offset - DATA_FORK_OFFSET;
  const at = offset + 16 * rng.int(inode.nextents);
  damage.change(b, inodeOff, offset - inodeOff + 16 * inode.nextents, () => {
    const e = decodeExtent(b, at);
    const geo = fsx.fs.geo;
    switch (rng.int(4)) {
      case 0: e.fsbno = geo.fsbno(rng.int(geo.agCount), 1 + rng.int(geo.agBlocks - 8)); break;
      case 1: e.fileoff += 1; break;
      case 2: e.unwritten = !e.unwritten; break;
      default: e.blockcount += 1;
    }
    encodeExtent(e, b, at);
    b.writeUInt32BE(inodeCrc(b, inodeOff), inodeOff + OFF_I_CRC);
  });
  return `inode ${ino} extent`;
}

t.test('RmapIndex answers as rmapFind on a clean tree, block by block', (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const rng = new Rng(testSeed(13));
  const model = new Model();
  fragmentedFile(fsx, model, rng, 'frag', 300);
  bystanders(fsx, model, rng, 150);
  for (const ag of fsx.fs.alloc.ags) {
    const index = new RmapIndex();
    const places = rmapRecordPlaces(fsx, ag.agno);
    t.equal(places.filter(([b, off]) => !index.add(b, off)).length, 0, `AG ${ag.agno}: leaves in order`);
    let differ = 0;
    for (let agbno = 0; agbno < fsx.fs.geo.agBlocks; agbno++) {
      if (JSON.stringify(index.find(agbno)) !== JSON.stringify(rmapFind(ag.rmap, agbno))) differ++;
    }
    t.equal(differ, 0, `AG ${ag.agno}: ${index.size} records in ${new Set(places.map((p) => p[0])).size} leaves, every block answered alike`);
  }
  t.end();
});

t.test('the file pass reports the same problems with the rmap indexed or looked up, under random damage', (t) => {
  const seed = testSeed(1313);
  t.comment(`seed ${seed}`);
  const rng = new Rng(seed);
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const model = new Model();
  const files = [fragmentedFile(fsx, model, rng, 'frag', 300), ...bystanders(fsx, model, rng, 250)];
  fsx.fsync();
  t.same(filePass(fsx, true, true), [], 'clean: nothing, indexed');
  t.same(filePass(fsx, false, true), [], 'clean: nothing, looked up');
  const damage = new Damage();
  let withProblems = 0;
  let mismatched = 0;
  const cases = 60;
  for (let c = 0; c < cases; c++) {
    const what: string[] = [];
    for (let k = 1 + rng.int(3); k > 0; k--) what.push(rng.int(2) === 0 ? damageRmap(fsx, rng, damage, files) : damageExtent(fsx, rng, damage, files));
    const sound = rng.int(2) === 0;
    const looked = filePass(fsx, false, sound);
    const indexed = filePass(fsx, true, sound);
    if (looked.length > 0) withProblems++;
    if (JSON.stringify(looked) !== JSON.stringify(indexed)) {
      mismatched++;
      if (mismatched <= 3) t.same(indexed, looked, `case ${c} (${what.join(', ')}): same problems`);
    }
    damage.undo();
  }
  t.equal(mismatched, 0, `${cases} cases, ${withProblems} with problems: indexed == looked up`);
  t.ok(withProblems > cases / 2, 'most cases found something (the damage reaches the pass)');
  t.same(filePass(fsx, true, true), [], 'undone: clean again');
  t.end();
});

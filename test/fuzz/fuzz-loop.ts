/**
 * The fuzz-and-repair loop (like fstests' xfs/3xx fuzz tests): every field
 * of a btree block or an AG's header blocks, under every fuzz verb of `rmapfs db`.
 *
 *   node dist/test/fuzz/fuzz-loop.js [--mounted | --offline [--spawn]] [--sample N]
 *        [--trees rmap,bno,...] [--match TEXT]
 *
 * Online -- the rmap, both free-space and the inode btrees (two levels each:
 * a root node's header, keys and pointers, a leaf's header and records);
 * AG 0's header (every field; its freeExtents, inodeCount and freeInodes are
 * the summary counters: rmapfs keeps them in the AG headers, the superblock
 * has no counter fields) and four free list entries (agfl[0], the middle one,
 * the last in use, the first past the count); every field of AG 1's
 * superblock (a secondary). For each field and verb: corrupt a copy of a
 * prepared filesystem with `rmapfs db`, open it as the daemon does and start
 * a writer (files created, written and removed between the scrub's and the
 * repair's slices, as FUSE requests are served between them in the daemon;
 * a write may fail while the damage is there), the sliced scrub must find
 * the damage -- or the field is harmless: scrub and check clean and every
 * file unchanged -- repair must fix it (the rmap: `repair --force-rebuild`;
 * every other row: plain `repair`, which rebuilds what its scrub finds, the
 * row says by which repairer), scrub clean, no write fails any more, close,
 * check clean, every file, xattr and writer's file unchanged.
 * --mounted runs the online rows (only) through real mounts instead: the
 * checkout's `rmapfs mount` (or $RMAPFS), a writer process
 * (test/fuzz/mount-writer.ts), `rmapfs scrub|repair --json`, `rmapfs
 * umount`, `rmapfs check`, files read through the mount (mountedCase). A
 * case costs a mount and a dozen processes (~seconds): sample it.
 * --offline runs every row (and the primary superblock's, `sb ag0`: mount
 * reads it before anything else and refuses a damaged one, so only an
 * offline repair can rebuild it) on an unmounted copy repaired through
 * `rmapfs repair --json IMAGE` (offlineCase; in this process, or with
 * --spawn as processes of bin/rmapfs).
 * File rows (in this process only, not --mounted): every inode core field
 * of the big file (its block map two levels), and the bmbt, dir and attr
 * btrees (two levels each: node and leaf), online as above with plain
 * `repair`. The damaged object may lose data, only as the repair's report
 * (reply.files[].changes) says (damageVerdict): a file's content only with
 * a report line about it; a directory's missing names exactly the number
 * (and names) reported lost, each file found again in /lost+found with its
 * content; an entry that names another file now (its inode number
 * damaged: no parent pointers tell which name was the damaged one) only
 * when its own file is in /lost+found and the report names both that path
 * and the entry's (retargetedUnreported); the attributes missing exactly
 * those reported dropped, the rest with their values. Every other file and
 * xattr unchanged. Each file row ends with the report's first lines (a
 * directory's followed by those about other inodes).
 * Prints a table (tree, block, field, verb, outcome), outcomes counted per
 * tree and block, and a summary; exits 1 when any case is neither detected
 * nor harmless, or not repaired, or changed a file. --sample N runs every
 * N-th case of each tree's rows (CI); --trees and --match pick rows.
 */
import * as childProcess from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { mkfs } from '../../src/fs/mkfs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { run } from '../../src/cli/main';
import { FUZZ_VERBS } from '../../src/cli/db';
import { checkDevice, CHECK_CLEAN } from '../../src/fsck/check';
import { scrubLiveSliced } from '../../src/scrub/live-scrub';
import { checkerFor, selectStructures } from '../../src/fsck/table';
import { onlineRepair } from '../../src/fsck/online';
import type { CtlReply } from '../../src/ctl/ctl';
import { INODE_FIELDS, S_IFDIR, S_IFREG } from '../../src/inode/inode-format';
import type { FileRepairResult } from '../../src/repair/file-repair';
import { BlockMap } from '../../src/file/bmap';
import { MAX_FILE_SIZE } from '../../src/file/file';
import { Directory } from '../../src/dir/dir';
import { AttrFork } from '../../src/attr/attr';
import { AG_HEADER_FIELDS, OFF_AGFL_COUNT, slotOffset, SLOT_HEIGHT, SLOT_ROOT } from '../../src/format/ag-header';
import { BLOCK_SIZE, SUPERBLOCK_FIELDS } from '../../src/format/superblock';
import type { AgBtreeName } from '../../src/format/ag-header';

const HEADER_FIELDS = ['magic', 'level', 'numrecs', 'leftsib', 'rightsib', 'blkno', 'lsn', 'uuid', 'owner', 'crc'];
const REC_FIELDS: Record<string, string[]> = {
  rmap: ['startblock', 'blockcount', 'owner', 'offset', 'flags'],
  bno: ['startblock', 'blockcount'],
  cnt: ['startblock', 'blockcount'],
  ino: ['startino', 'freecount', 'freemask'],
  bmbt: ['fileoff', 'blockcount', 'fsbno', 'unwritten'],
  dir: ['hash', 'cidx', 'ftype', 'namelen', 'ino', 'name'],
  attr: ['hash', 'cidx', 'namelen', 'valuelen', 'valueblock', 'name', 'value', 'valuecrc'],
};
const KEY_FIELDS: Record<string, string[]> = {
  rmap: ['startblock', 'owner', 'offset', 'flags'],
  bno: ['startblock'],
  cnt: ['blockcount', 'startblock'],
  ino: ['startino'],
  bmbt: ['fileoff'],
  dir: ['hash', 'cidx'],
  attr: ['hash', 'cidx'],
};

/**
 * The file a file row damages (the big file's block map or inode core, the
 * directory, the attribute file's xattrs): it alone may lose data, and only
 * what the repair's report says (damageVerdict).
 */
interface DamagedObject {
  kind: 'file' | 'dir' | 'xattrs';
  ino: number;
  /** Its key in the case's hashes ('big', 'xattr:attrs'; the directory's entries are 'dir/...'). */
  hashKey: string;
  /** A file's size as built. */
  size?: number;
}

interface Target {
  /** The row's first column: a btree's name, or agh, agfl, sb, inode. */
  tree: string;
  /** The db words naming the block: "block AGNO AGBNO TREE", "fsblock FSBNO TREE", "agh AGNO" or "sb AGNO". */
  where: string;
  /** The row's second column: node or leaf of a btree; hdr (an AG header), list (its free list), ag1 (AG 1's superblock). */
  what: string;
  /** Its fields `rmapfs db` can fuzz, each fuzzed with every verb. */
  fields: readonly string[];
  /** A file row's damaged object; AG rows damage no file. */
  damaged?: DamagedObject;
}

interface Case {
  target: Target;
  field: string;
  verb: string;
}

/**
 * 'undetectable: valid value': a file's size grown within the largest file,
 * reading as its old content followed by zeros (a sparse tail), or cut
 * within its last block with the cut bytes still there past EOF (what a
 * crash between an appending write and its log force leaves): a valid value
 * that no second source contradicts (XFS cannot tell either) -- named as
 * such, never counted as harmless (validSparseTail, validShortTail).
 */
type Outcome = 'detected+repaired' | 'harmless' | 'undetectable: valid value' | 'unchanged' | 'n/a' | 'FAIL';

interface Row {
  c: Case;
  outcome: Outcome;
  detail: string;
  /** What the online repair rebuilt (structure names), for a case it repaired. */
  rebuilt?: string[];
  /** A file row's report about the damaged object (FileRepairResult.changes), shown after the row. */
  reported?: string[];
  /** A mounted case's writer process: how many changes it made while scrub and repair ran, how many failed. */
  writer?: { steps: number; failures: number };
}

function arg(argv: string[], name: string, dflt: number): number {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
}


/** Runs a db fuzz; 'unchanged' when the verb left the value as it was (ones on an all-ones field, ...). */
async function db(image: string, command: string): Promise<{ code: number; err: string; unchanged: boolean }> {
  let err = '';
  let out = '';
  const code = await run(['db', image, command], { out: (l) => { out += l; }, err: (l) => { err += l; } });
  const m = / (\S+) -> (\S+)$/.exec(out.trim());
  return { code, err, unchanged: m !== null && m[1] === m[2] };
}

/**
 * Builds a filesystem cases start from: the rmap, free-space, bmbt, dir and
 * attr btrees at least two levels high; `manyInodes`: the inode btree too
 * (16k inodes: only its rows pay for them); `agCount` 2 gives the header
 * rows a secondary superblock. Returns file hashes.
 */
function build(image: string, options: { manyInodes: boolean; agCount: number }): { hashes: Map<string, string>; bigFile: number; bigSize: number; bigDir: number; attrFile: number } {
  mkfs(image, { size: 64 << 20, agCount: options.agCount });
  const fsx = Rmapfs.open(image);
  const root = fsx.rootIno;
  // Two files interleaved block by block, then one removed: hundreds of rmap records in AG 0,
  // hundreds of one-block free extents (bno/cnt two levels), and a file with a two-level bmbt.
  const big = fsx.create(root, 'big', S_IFREG | 0o644, 0, 0).ino;
  const gone = fsx.create(root, 'gone', S_IFREG | 0o644, 0, 0).ino;
  for (let i = 0; i < 1200; i++) {
    fsx.write(big, i * 2 * 4096, Buffer.alloc(4096, i & 0xff));
    fsx.write(gone, i * 2 * 4096, Buffer.alloc(4096, 1));
  }
  fsx.unlink(root, 'gone');
  // A directory of 80 entries (two levels of 272-byte entries) and a file with 40 xattrs.
  const dir = fsx.mkdir(root, 'dir', S_IFDIR | 0o755, 0, 0).ino;
  for (let i = 0; i < 80; i++) {
    const f = fsx.create(dir, `entry-${i}`, S_IFREG | 0o644, 0, 0).ino;
    fsx.write(f, 0, crypto.createHash('sha256').update(`e${i}`).digest());
  }
  const attrFile = fsx.create(root, 'attrs', S_IFREG | 0o644, 0, 0).ino;
  for (let i = 0; i < 40; i++) fsx.setxattr(attrFile, `user.k${i}`, Buffer.alloc(i % 2 === 0 ? 20 : 300, i));
  if (options.manyInodes) {
    // Enough inode chunks for a two-level inode btree (250 chunk records fit one leaf), then all but
    // one inode of every 64 removed: each chunk keeps one inode in use (a chunk is freed when its
    // last inode goes), and every scrub's file pass has 260 inodes to check rather than 16k.
    const many = fsx.mkdir(root, 'many', S_IFDIR | 0o755, 0, 0).ino;
    for (let i = 0; i < 64 * 260; i++) fsx.create(many, `i${i}`, S_IFREG | 0o644, 0, 0);
    for (let i = 0; i < 64 * 260; i++) if (i % 64 !== 0) fsx.unlink(many, `i${i}`);
  }
  fsx.close();
  return finish(image, big, dir, attrFile);
}

/** The hashes of the files (and xattrs) every case must leave unchanged. */
function finish(image: string, big: number, dir: number, attrFile: number): ReturnType<typeof build> {
  const hashes = new Map<string, string>();
  const check = Rmapfs.open(image, { readOnly: true });
  hashes.set('big', hashOf(check, check.lookup(check.rootIno, 'big')));
  for (let i = 0; i < 80; i += 7) hashes.set(`dir/entry-${i}`, hashOf(check, check.lookup(dir, `entry-${i}`)));
  hashes.set('xattr:attrs', xattrHash(check, check.lookup(check.rootIno, 'attrs')));
  const bigSize = check.stat(big).size;
  check.close();
  return { hashes, bigFile: big, bigSize, bigDir: dir, attrFile };
}

function hashOf(fsx: Rmapfs, ino: number): string {
  const size = fsx.stat(ino).size;
  return crypto.createHash('sha256').update(size > 0 ? fsx.read(ino, 0, size) : Buffer.alloc(0)).digest('hex');
}

/** One hash over a file's extended attributes, names and values. */
function xattrHash(fsx: Rmapfs, ino: number): string {
  const h = crypto.createHash('sha256');
  for (const name of fsx.listxattr(ino).sort()) h.update(name).update(fsx.getxattr(ino, name));
  return h.digest('hex');
}

/** Which files (or, for "xattr:NAME", a file's extended attributes) differ from the recorded hashes. */
function changedFiles(fsx: Rmapfs, hashes: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [p, want] of hashes) {
    try {
      const xattrs = p.startsWith('xattr:');
      let ino = fsx.rootIno;
      for (const part of (xattrs ? p.slice(6) : p).split('/')) ino = fsx.lookup(ino, part);
      if ((xattrs ? xattrHash(fsx, ino) : hashOf(fsx, ino)) !== want) out.push(p);
    } catch (e) {
      out.push(`${p} (${e instanceof Error ? e.message : String(e)})`);
    }
  }
  return out;
}

/** The root and one leaf of AG 0's btree `tree`, as db targets (the tree must be two levels). */
function agTargets(image: string, tree: AgBtreeName): Target[] {
  const fsx = Rmapfs.open(image, { readOnly: true });
  try {
    const ag = fsx.fs.alloc.ag(0);
    const hdr = ag.header().data;
    const root = hdr.readUInt32BE(slotOffset(tree) + SLOT_ROOT);
    const height = hdr.readUInt32BE(slotOffset(tree) + SLOT_HEIGHT);
    if (height < 2) throw new Error(`AG 0 ${tree} btree is ${height} level high; the fuzz loop needs two`);
    let leaf = -1;
    const t = tree === 'bno' ? ag.bno : tree === 'cnt' ? ag.cnt : tree === 'rmap' ? ag.rmap : ag.ino;
    t.visitBlocks((ptr, level) => { if (level === 0 && leaf < 0) leaf = ptr; });
    return btreeTargets(tree, `block 0 ${root} ${tree}`, `block 0 ${leaf} ${tree}`);
  } finally {
    fsx.close();
  }
}

/** The root and one leaf of an inode's btree (bmbt, dir or attr); its pointers are filesystem block numbers. */
function inodeTargets(image: string, damaged: DamagedObject, tree: 'bmbt' | 'dir' | 'attr'): Target[] {
  const ino = damaged.ino;
  const fsx = Rmapfs.open(image, { readOnly: true });
  try {
    const inode = fsx.inodes.handle(ino);
    const fs0 = fsx.fs;
    const ctx = { device: fs0.device, alloc: fs0.alloc, geo: fs0.geo, noteDataWritten: () => undefined };
    const t = tree === 'bmbt' ? new BlockMap(inode, fs0.alloc, fs0.geo).btree
      : tree === 'dir' ? new Directory(inode, fs0.alloc, fs0.geo).tree : new AttrFork(inode, ctx).btree;
    if (t === null) throw new Error(`inode ${ino} has no ${tree} btree`);
    const root = t.storage.getRoot();
    if (root.height < 2) throw new Error(`the ${tree} btree of inode ${ino} is ${root.height} level high; the fuzz loop needs two`);
    let leaf = -1;
    t.visitBlocks((ptr, level) => { if (level === 0 && leaf < 0) leaf = ptr; });
    return btreeTargets(tree, `fsblock ${root.ptr} ${tree}`, `fsblock ${leaf} ${tree}`).map((t) => ({ ...t, damaged }));
  } finally {
    fsx.close();
  }
}

/** The damaged objects of the file rows, in the build's files. */
function damagedObjects(built: ReturnType<typeof build>): Record<'big' | 'dir' | 'attrs', DamagedObject> {
  return {
    big: { kind: 'file', ino: built.bigFile, hashKey: 'big', size: built.bigSize },
    dir: { kind: 'dir', ino: built.bigDir, hashKey: 'dir/' },
    attrs: { kind: 'xattrs', ino: built.attrFile, hashKey: 'xattr:attrs' },
  };
}

/** Every inode core field of the big file (a two-level block map: every field has something to lose). */
function inodeCoreTarget(big: DamagedObject): Target {
  return { tree: 'inode', where: `inode ${big.ino}`, what: 'core', fields: INODE_FIELDS.map((f) => f.name), damaged: big };
}

/** A btree's root node (header, a key, a pointer) and one leaf (header, a record), as targets. */
function btreeTargets(tree: string, nodeWhere: string, leafWhere: string): Target[] {
  return [
    { tree, where: nodeWhere, what: 'node', fields: [...HEADER_FIELDS, ...KEY_FIELDS[tree]!.map((k) => `key[1].${k}`), 'ptr[1]'] },
    { tree, where: leafWhere, what: 'leaf', fields: [...HEADER_FIELDS, ...REC_FIELDS[tree]!.map((r) => `rec[1].${r}`)] },
  ];
}

/**
 * AG 0's header (every field; its free-extent, inode and free-inode counts
 * are the summary counters), four of its free list's entries (the first,
 * one in the middle, the last in use, the first past the count) and AG 1's
 * superblock (every field). Not the primary superblock: mount reads it
 * before anything else, so its damage is for offline repair.
 */
function headerTargets(image: string): Target[] {
  const fsx = Rmapfs.open(image, { readOnly: true });
  let inUse: number;
  try {
    if (fsx.fs.geo.agCount < 2) throw new Error('the header rows need a second AG (its superblock is a secondary)');
    inUse = fsx.fs.alloc.ag(0).header().data.readUInt32BE(OFF_AGFL_COUNT);
  } finally {
    fsx.close();
  }
  if (inUse < 3) throw new Error(`AG 0's free list holds ${inUse} blocks; the fuzz loop needs three`);
  const entries = [0, inUse >> 1, inUse - 1, inUse].map((i) => `agfl[${i}]`);
  return [
    { tree: 'agh', where: 'agh 0', what: 'hdr', fields: AG_HEADER_FIELDS.map((f) => f.name) },
    { tree: 'agfl', where: 'agh 0', what: 'list', fields: entries },
    { tree: 'sb', where: 'sb 1', what: 'ag1', fields: SUPERBLOCK_FIELDS.map((f) => f.name) },
  ];
}

function casesFor(targets: Target[]): Case[] {
  const out: Case[] = [];
  for (const target of targets) for (const field of target.fields) for (const verb of FUZZ_VERBS) out.push({ target, field, verb });
  return out;
}

/** What a repair rebuilt, by structure name ("bnobt+cntbt" for the free-space repairer): from the daemon's reply or `repair --json`. */
function rebuiltBy(reply: CtlReply | Record<string, unknown>): string[] {
  const names: string[] = [];
  const some = (field: string): boolean => Array.isArray(reply[field]) && (reply[field] as unknown[]).length > 0;
  if (some('ags')) names.push('rmapbt');
  if (some('freeSpace')) names.push('bnobt+cntbt');
  if (some('inodeBtree')) names.push('inobt');
  if (Array.isArray(reply.headers)) for (const h of reply.headers as { type: string }[]) if (!names.includes(h.type)) names.push(h.type);
  if (Array.isArray(reply.files)) for (const f of reply.files as { type: string }[]) if (!names.includes(f.type)) names.push(f.type);
  return names;
}

/**
 * A writer in the daemon's event loop: between the slices of a scrub or a
 * repair it creates files, writes them (allocating in the AG, splitting
 * free extents) and removes the oldest every other step (freeing, so the filesystem never fills), keeping the hash of
 * what it wrote. While the damage is there a change may fail (its
 * transaction rolls back, the file is forgotten); `strict` makes a failure
 * the case's failure -- after the repair, nothing may fail any more.
 */
class Writer {
  private readonly files = new Map<string, string>();
  private next = 0;
  private running = false;
  private loop: Promise<void> = Promise.resolve();
  failed: string | null = null;
  failures = 0;

  constructor(private readonly fsx: Rmapfs) {}

  start(): void {
    this.running = true;
    this.loop = (async () => {
      // Its first change after the scrub has begun (the scrub's view is of the damage as db left it).
      for (;;) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (!this.running) break;
        this.step(false);
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  /** One change; false when it failed. */
  step(strict: boolean): boolean {
    const n = this.next++;
    const name = `writer-${n}`;
    try {
      if (n % 2 === 1 && this.files.size > 0) {
        const [gone] = this.files.keys();
        this.files.delete(gone!);
        this.fsx.unlink(this.fsx.rootIno, gone!);
        return true;
      }
      const data = crypto.createHash('sha256').update(name).digest();
      const body = Buffer.concat(Array.from({ length: 128 * (1 + (n % 3)) }, () => data)); // 1-3 blocks
      const ino = this.fsx.create(this.fsx.rootIno, name, S_IFREG | 0o644, 0, 0).ino;
      this.files.set(name, '');
      this.fsx.write(ino, 0, body);
      this.files.set(name, crypto.createHash('sha256').update(body).digest('hex'));
      return true;
    } catch (e) {
      this.failures++;
      if (strict && this.failed === null) this.failed = `${name}: ${e instanceof Error ? e.message : String(e)}`;
      return false;
    }
  }

  /** Its files whose content is not what it wrote (those whose write failed under the damage are left out). */
  changed(): string[] {
    const out: string[] = [];
    for (const [name, want] of this.files) {
      if (want === '') continue;
      try {
        if (hashOf(this.fsx, this.fsx.lookup(this.fsx.rootIno, name)) !== want) out.push(name);
      } catch (e) {
        out.push(`${name} (${e instanceof Error ? e.message : String(e)})`);
      }
    }
    return out;
  }
}

/** The repair report's lines about one inode (every repairer that rebuilt something of it). */
function reportedChanges(files: readonly FileRepairResult[], ino: number): string[] {
  return files.filter((f) => f.ino === ino).flatMap((f) => f.changes);
}

/** The file repairs of a repair's reply (online.ts fills `files` with FileRepairResult). */
function filesOf(reply: CtlReply): FileRepairResult[] {
  return Array.isArray(reply.files) ? reply.files as FileRepairResult[] : [];
}

/**
 * How many names (or attributes) a report says were lost, and which by
 * name: "3 names lost" / "8 attributes lost" (the count of a block that did
 * not verify), "entry 'x' dropped: ...", "entry 4 of block 9 dropped: ...",
 * "user.x: value dropped (...)".
 */
function reportedLosses(changes: readonly string[], noun: 'entry' | 'attribute'): { count: number; names: Set<string> } {
  let count = 0;
  const names = new Set<string>();
  for (const line of changes) {
    const lost = /^(\d+) (?:names?|attributes?) lost/.exec(line);
    if (lost !== null) count += Number(lost[1]);
    else if (new RegExp(`^${noun} \\d+ of block \\d+ dropped`).test(line)) count++;
    else {
      // "attribute 'x' dropped: ...", or an attribute dropped for its value: "user.x: value dropped (...)".
      const named = new RegExp(`^${noun} '?(.+?)'? dropped`).exec(line) ?? /^(\S+): value dropped/.exec(line);
      if (named !== null) { count++; names.add(named[1]!); }
    }
  }
  return { count, names };
}

/** The content build() gave dir/entry-I. */
const entryContent = (i: number): Buffer => crypto.createHash('sha256').update(`e${i}`).digest();
/** The value build() gave the attribute file's user.kI. */
const attrValue = (i: number): Buffer => Buffer.alloc(i % 2 === 0 ? 20 : 300, i);

/**
 * The damaged object after the repair, against the report: null when it is
 * as built, or lost only what the report says (a directory's names missing
 * = the names it says were lost, each file found in /lost+found with its
 * content; the attributes missing = those it says were dropped; a file's
 * content changed only with a line of the report about it); else what is
 * wrong, one line.
 */
function damageVerdict(fsx: Rmapfs, damaged: DamagedObject, hashes: Map<string, string>, files: readonly FileRepairResult[]): string | null {
  const changes = reportedChanges(files, damaged.ino);
  if (damaged.kind === 'file') {
    const changed = changedFiles(fsx, new Map([[damaged.hashKey, hashes.get(damaged.hashKey)!]]));
    return changed.length > 0 && changes.length === 0 ? `${changed.join(', ')} changed, and the report says nothing of it` : null;
  }
  if (damaged.kind === 'xattrs') {
    const present = new Set(fsx.listxattr(damaged.ino));
    const wrong: string[] = [];
    const missing = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const name = `user.k${i}`;
      if (!present.delete(name)) missing.add(name);
      else {
        try {
          if (!fsx.getxattr(damaged.ino, name).equals(attrValue(i))) wrong.push(name);
        } catch (e) {
          // Kept by the repair, yet its value does not read back (a crc that no longer matches): a finding, not a crash.
          wrong.push(`${name} (${e instanceof Error ? e.message : String(e)})`);
        }
      }
    }
    const said = reportedLosses(changes, 'attribute');
    const problems = [
      ...(wrong.length > 0 ? [`values changed: ${wrong.join(' ')}`] : []),
      ...(present.size > 0 ? [`attributes not made: ${[...present].join(' ')}`] : []),
      ...[...said.names].filter((n) => !missing.has(n)).map((n) => `reported dropped but there: ${n}`),
      ...(said.count !== missing.size ? [`${missing.size} missing (${[...missing].join(' ')}), report says ${said.count}`] : []),
    ];
    return problems.length > 0 ? problems.join('; ') : null;
  }
  // A directory: its names, and where each entry's file is (here, or adopted into /lost+found).
  const names = new Set(fsx.readdir(damaged.ino).map((e) => e.name).filter((n) => n !== '.' && n !== '..'));
  const adopted = new Set<string>();
  try {
    const lf = fsx.lookup(fsx.rootIno, 'lost+found');
    for (const e of fsx.readdir(lf)) {
      if (e.name === '.' || e.name === '..') continue;
      const ino = fsx.lookup(lf, e.name);
      adopted.add(fsx.read(ino, 0, fsx.stat(ino).size).toString('hex'));
    }
  } catch {
    // No /lost+found: nothing was adopted.
  }
  const problems: string[] = [];
  const missing = new Set<string>();
  for (let i = 0; i < 80; i++) {
    const name = `entry-${i}`;
    if (names.delete(name)) {
      const ino = fsx.lookup(damaged.ino, name);
      if (!fsx.read(ino, 0, fsx.stat(ino).size).equals(entryContent(i))) {
        const why = retargetedUnreported(fsx, files, `/${damaged.hashKey}${name}`, entryContent(i));
        if (why !== null) problems.push(`${name} has another file's content, ${why}`);
      }
    } else {
      missing.add(name);
      if (!adopted.has(entryContent(i).toString('hex'))) problems.push(`${name}'s file is neither there nor in /lost+found`);
    }
  }
  if (names.size > 0) problems.push(`names not made: ${[...names].join(' ')}`);
  const said = reportedLosses(changes, 'entry');
  problems.push(...[...said.names].filter((n) => !missing.has(n)).map((n) => `reported dropped but there: ${n}`));
  if (said.count !== missing.size) problems.push(`${missing.size} names missing (${[...missing].join(' ')}), report says ${said.count}`);
  return problems.length > 0 ? problems.join('; ') : null;
}

/**
 * An entry that names another file now (its inode number damaged): nothing
 * can tell which name of that file was the damaged one, so the entry's own
 * file must be in /lost+found and the report must say both -- the path it
 * was moved to ("moved to /lost+found/N", holding `content`) and, in another
 * line, the entry by its path (`entryPath`). Null when it says both, else
 * what it lacks.
 */
function retargetedUnreported(fsx: Rmapfs, files: readonly FileRepairResult[], entryPath: string, content: Buffer): string | null {
  const moved = files.flatMap((f) => f.changes.map((c) => /^moved to (\/lost\+found\/\S+)$/.exec(c)?.[1])
    .filter((p): p is string => p !== undefined).map((to) => ({ ino: f.ino, to })));
  const orphan = moved.find((m) => {
    try {
      const ino = fsx.lookup(fsx.lookup(fsx.rootIno, 'lost+found'), m.to.split('/')[2]!);
      return fsx.read(ino, 0, fsx.stat(ino).size).equals(content);
    } catch {
      return false;
    }
  });
  if (orphan === undefined) return "and the report names no /lost+found path holding the entry's file";
  const named = new RegExp(`(^|[\\s,])${entryPath.replace(/[.+]/g, '\\$&')}(?=[\\s,:]|$)`);
  const says = files.some((f) => f.ino !== orphan.ino && (f.changes.some((c) => named.test(c))));
  return says ? null : `its file is ${orphan.to}, and no report line names ${entryPath}`;
}

/** How much of a grown file's tail is read to see zeros (past it: no extent may be mapped). */
const TAIL_READ = 1 << 20;

/**
 * Whether the damaged file reads as its content as built followed by zeros
 * (its size grown, still a valid one): its old bytes hash as built, nothing
 * is mapped past its old last block (a hole reads as zeros), and the first
 * MiB of the new tail does read as zeros.
 */
function validSparseTail(fsx: Rmapfs, damaged: DamagedObject, hashes: Map<string, string>): boolean {
  if (damaged.kind !== 'file' || damaged.size === undefined) return false;
  const old = damaged.size;
  try {
    const size = fsx.stat(damaged.ino).size;
    if (size <= old || size > MAX_FILE_SIZE) return false;
    const head = fsx.read(damaged.ino, 0, old);
    if (crypto.createHash('sha256').update(head).digest('hex') !== hashes.get(damaged.hashKey)) return false;
    const extents = new BlockMap(fsx.inodes.get(damaged.ino), fsx.fs.alloc, fsx.fs.geo).extents();
    const mappedEnd = extents.reduce((end, e) => Math.max(end, (e.fileoff + e.blockcount) * BLOCK_SIZE), 0);
    if (mappedEnd > Math.ceil(old / BLOCK_SIZE) * BLOCK_SIZE) return false;
    return fsx.read(damaged.ino, old, TAIL_READ).every((b) => b === 0);
  } catch {
    return false;
  }
}

/**
 * Whether the damaged file's size was cut within its last block and nothing
 * else changed: its bytes up to the new size, followed by the rest of that
 * block as it lies on the device past EOF, hash as built. That is the state
 * a crash leaves between an appending write's data (written in place) and
 * the log force that records its new size -- a state the filesystem makes
 * itself, so no checker may call it damage (XFS and ext4 cannot either).
 */
function validShortTail(fsx: Rmapfs, damaged: DamagedObject, hashes: Map<string, string>): boolean {
  if (damaged.kind !== 'file' || damaged.size === undefined) return false;
  const old = damaged.size;
  try {
    const size = fsx.stat(damaged.ino).size;
    const lastBlock = Math.floor((old - 1) / BLOCK_SIZE);
    if (size >= old || size <= lastBlock * BLOCK_SIZE) return false;
    const { hit } = new BlockMap(fsx.inodes.get(damaged.ino), fsx.fs.alloc, fsx.fs.geo).lookup(lastBlock);
    if (hit === null || hit.unwritten) return false;
    const block = Buffer.alloc(BLOCK_SIZE);
    fsx.fs.device.read((hit.fsbno + lastBlock - hit.fileoff) * BLOCK_SIZE, block, 0, BLOCK_SIZE);
    const pastEof = block.subarray(size - lastBlock * BLOCK_SIZE, old - lastBlock * BLOCK_SIZE);
    const whole = Buffer.concat([fsx.read(damaged.ino, 0, size), pastEof]);
    return crypto.createHash('sha256').update(whole).digest('hex') === hashes.get(damaged.hashKey);
  } catch {
    return false;
  }
}

/** Copies the pristine image to `work` and fuzzes the case's field there; a row when there is nothing to test (not fuzzable, value unchanged). */
async function fuzzCopy(pristine: string, work: string, c: Case): Promise<Row | null> {
  fs.copyFileSync(pristine, work);
  const f = await db(work, `fuzz ${c.target.where} ${c.field} ${c.verb}`);
  if (f.code !== 0) return { c, outcome: 'n/a', detail: f.err };
  if (f.unchanged) return { c, outcome: 'unchanged', detail: '' };
  return null;
}

async function onlineCase(pristine: string, work: string, c: Case, hashes: Map<string, string>): Promise<Row> {
  const notFuzzed = await fuzzCopy(pristine, work, c);
  if (notFuzzed !== null) return notFuzzed;
  let fsx: Rmapfs;
  try {
    fsx = Rmapfs.open(work);
  } catch (e) {
    // Mount refused the damage: detected, but the online repair cannot run -- a failure of every online row.
    return { c, outcome: 'FAIL', detail: `mount failed: ${e instanceof Error ? e.message : String(e)}` };
  }
  let outcome: Outcome;
  let detail = '';
  let rebuilt: string[] = [];
  let lost: string[] = [];
  const writer = new Writer(fsx);
  // Slices as small as a busy daemon's (a FUSE request waiting ends each), so the writer runs all through.
  const sliced = { sliceMs: 1e9, maxUnits: 8 };
  try {
    writer.start();
    const before = await scrubLiveSliced(fsx.fs, checkerFor(null), sliced);
    const detected = before.problemCount > 0;
    // Through the structure table: the rmap as `rmapfs repair --force-rebuild` (a harmless case is
    // rebuilt too); every other row as `rmapfs repair` (what its own scrub finds damaged).
    const repaired = await onlineRepair(fsx, selectStructures(null, null), null,
      { forceRebuild: c.target.tree === 'rmap', measureHeap: false, cancelled: () => false },
      { foregroundWaiting: () => true, abortReason: () => null, send: () => undefined });
    await writer.stop();
    rebuilt = rebuiltBy(repaired);
    if (!repaired.ok) {
      fsx.fs.shutdown('fuzz case over'); // write nothing more
      return { c, outcome: 'FAIL', detail: `repair failed: ${String(repaired.error)}` };
    }
    const after = await scrubLiveSliced(fsx.fs, checkerFor(null), sliced);
    // Repaired means usable: the writes that the damage may have refused all work now.
    for (let i = 0; i < 30; i++) writer.step(true);
    // The damaged object may have lost what the report says (damageVerdict); every other file nothing.
    const damaged = c.target.damaged;
    const untouched = new Map([...hashes].filter(([key]) => damaged === undefined || !key.startsWith(damaged.hashKey)));
    const changed = [...changedFiles(fsx, untouched), ...writer.changed()];
    const lossWrong = damaged === undefined ? null : damageVerdict(fsx, damaged, hashes, filesOf(repaired));
    lost = damaged === undefined ? [] : reportedChanges(filesOf(repaired), damaged.ino);
    // A directory's damage reaches other inodes (link counts, /lost+found): their lines follow, by path or number.
    if (damaged?.kind === 'dir') {
      lost.push(...filesOf(repaired).filter((f) => f.ino !== damaged.ino)
        .flatMap((f) => f.changes.map((c) => `${f.path ?? `inode ${f.ino}`}: ${c}`)));
    }
    if (after.problemCount > 0) {
      outcome = 'FAIL';
      detail = `scrub after the repair: ${after.problems.slice(0, 2).map((p) => p.message).join('; ')}`;
    } else if (writer.failed !== null) {
      outcome = 'FAIL';
      detail = `a write failed after the repair: ${writer.failed}`;
    } else if (changed.length > 0) {
      outcome = 'FAIL';
      detail = `files changed: ${changed.join(', ')}`;
    } else if (lossWrong !== null && !detected && (validSparseTail(fsx, damaged!, hashes) || validShortTail(fsx, damaged!, hashes))) {
      outcome = 'undetectable: valid value';
    } else if (lossWrong !== null) {
      outcome = 'FAIL';
      detail = `the damaged ${damaged!.kind} against the report: ${lossWrong}`;
    } else {
      outcome = detected ? 'detected+repaired' : 'harmless';
    }
  } finally {
    await writer.stop();
    fsx.close();
  }
  const report = checkDevice(work);
  if (report.status !== CHECK_CLEAN && outcome !== 'FAIL') {
    outcome = 'FAIL';
    detail = `check after the repair: ${report.error ?? report.result.problems[0]?.message ?? ''}`;
  }
  return { c, outcome, detail, rebuilt, reported: lost };
}

/** --spawn: the offline rows' commands run as processes of the checkout's `rmapfs` (or $RMAPFS), as a user runs them. */
const SPAWN_CLI = process.argv.includes('--spawn');

/**
 * A CLI command run in this process (`run` of src/cli/main: its argument
 * parsing, its exit status) -- or, with --spawn, as a process: its status
 * and printed lines.
 */
async function cli(...argv: string[]): Promise<CommandResult> {
  if (SPAWN_CLI) return runCommand(RMAPFS_COMMAND, argv);
  let out = '';
  let err = '';
  const code = await run(argv, { out: (l) => { out += `${l}\n`; }, err: (l) => { err += `${l}\n`; } });
  return { code, out, err };
}

/** The offline repair's whole-device steps, named by what their lines say they rebuilt (src/fsck/offline.ts). */
function wholeDeviceSteps(lines: readonly string[]): string[] {
  const steps = new Set<string>();
  for (const line of lines) {
    if (line.startsWith('primary superblock')) steps.add('primary-sb');
    else if (line.startsWith('log')) steps.add('log');
    else if (/^AG \d+: header rebuilt from a scan/.test(line)) steps.add('agh-scan');
    else if (line.startsWith('root directory')) steps.add('root-found');
    else steps.add('whole-device');
  }
  return [...steps];
}

/** The second column of the primary superblock's rows (only offline: mount refuses a damaged one). */
const PRIMARY_SB_WHAT = 'ag0';

/**
 * An offline row: the fuzzed copy repaired as a user would, through the CLI
 * (`rmapfs repair --json IMAGE`, run in this process: the command's own
 * parsing, report and fsck(8) exit status, without a process per step):
 * exit 1 (errors corrected) = detected, 0 = nothing found (harmless only if
 * all that follows holds), 4 (left uncorrected) or 8 = FAIL; then `rmapfs
 * check` clean, every file and xattr as built (the damaged object may lose
 * only what the report's per-object lines say: damageVerdict), a strict
 * writer (30 changes, none may fail), and a second `rmapfs repair` exits 0
 * having rebuilt nothing (it checks the writer's changes too).
 */
async function offlineCase(pristine: string, work: string, c: Case, hashes: Map<string, string>): Promise<Row> {
  const notFuzzed = await fuzzCopy(pristine, work, c);
  if (notFuzzed !== null) return notFuzzed;
  const fail = (detail: string, rest: Partial<Row> = {}): Row => ({ c, outcome: 'FAIL', detail, ...rest });
  const repaired = await cli('repair', '--json', work);
  const reply = jsonOf(repaired);
  if (reply === null) return fail(`repair printed no JSON: status ${repaired.code}: ${repaired.err.trim().split('\n').pop() ?? ''}`);
  const wholeDevice = Array.isArray(reply.wholeDevice) ? reply.wholeDevice as string[] : [];
  const rebuilt = [...wholeDeviceSteps(wholeDevice), ...rebuiltBy(reply)];
  const files = Array.isArray(reply.files) ? reply.files as FileRepairResult[] : [];
  const damaged = c.target.damaged;
  const reported = damaged === undefined ? [] : reportedChanges(files, damaged.ino);
  if (repaired.code !== 1 && repaired.code !== 0) return fail(`repair: ${failureOf(repaired)}`, { rebuilt, reported });
  // fsck(8): 0 is "no errors"; a repair that rebuilt something must say 1.
  if (repaired.code === 0 && rebuilt.length > 0) return fail(`repair exited 0 (clean) yet rebuilt ${rebuilt.join(',')}`, { rebuilt, reported });
  const checked = await cli('check', work);
  if (checked.code !== 0) return fail(`check after the repair: ${checked.out.trim().split('\n')[0] ?? ''} ${checked.err.trim()}`, { rebuilt, reported });
  let detail: string | null = null;
  let validValue = false;
  {
    const fsx = Rmapfs.open(work, { readOnly: true });
    try {
      const untouched = new Map([...hashes].filter(([key]) => damaged === undefined || !key.startsWith(damaged.hashKey)));
      const changed = changedFiles(fsx, untouched);
      const lossWrong = damaged === undefined ? null : damageVerdict(fsx, damaged, hashes, files);
      if (changed.length > 0) detail = `files changed: ${changed.join(', ')}`;
      else if (lossWrong !== null && repaired.code === 0
        && (validSparseTail(fsx, damaged!, hashes) || validShortTail(fsx, damaged!, hashes))) validValue = true;
      else if (lossWrong !== null) detail = `the damaged ${damaged!.kind} against the report: ${lossWrong}`;
    } finally {
      fsx.close();
    }
  }
  if (detail === null) {
    // Repaired means usable: every one of a writer's changes must succeed, and leave it clean.
    const fsx = Rmapfs.open(work);
    const writer = new Writer(fsx);
    try {
      for (let i = 0; i < 30; i++) writer.step(true);
      if (writer.failed !== null) detail = `a write failed after the repair: ${writer.failed}`;
      else if (writer.changed().length > 0) detail = `the writer's files changed: ${writer.changed().join(', ')}`;
    } finally {
      fsx.close();
    }
  }
  if (detail === null) {
    // It checks the filesystem again (the writer's changes too): a clean one is only read.
    const again = await cli('repair', '--json', work);
    const againReply = jsonOf(again);
    if (again.code !== 0 || againReply === null || rebuiltBy(againReply).length > 0) {
      detail = `a second repair (after the writer): ${failureOf(again)}${againReply === null ? '' : ` rebuilt ${rebuiltBy(againReply).join(',')}`}`;
    }
  }
  if (detail !== null) return fail(detail, { rebuilt, reported });
  const outcome: Outcome = validValue ? 'undetectable: valid value' : repaired.code === 1 ? 'detected+repaired' : 'harmless';
  return { c, outcome, detail: '', rebuilt, reported };
}

/** The rmapfs command of this checkout (or $RMAPFS, as the regress runner sets it). */
const RMAPFS_COMMAND = process.env.RMAPFS ?? path.resolve(__dirname, '..', '..', '..', 'bin', 'rmapfs');

interface CommandResult { code: number; out: string; err: string }

/** Runs a command to its end without blocking this process (a writer child and the daemon go on meanwhile). */
function runCommand(file: string, args: readonly string[]): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = childProcess.spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('error', (e) => resolve({ code: -1, out, err: e.message }));
    child.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

const rmapfs = (...args: string[]): Promise<CommandResult> => runCommand(RMAPFS_COMMAND, args);

/** The JSON object an `rmapfs ... --json` printed, or null (the command died before printing one). */
function jsonOf(r: CommandResult): Record<string, unknown> | null {
  try {
    const parsed: unknown = JSON.parse(r.out.trim().split('\n').pop() ?? '');
    return typeof parsed === 'object' && parsed !== null ? parsed as Record<string, unknown> : null;
  } catch {
    return null;
  }
}

/** A command's failure in one line: its JSON error, else its last stderr line. */
function failureOf(r: CommandResult): string {
  const j = jsonOf(r);
  const problems = Array.isArray(j?.problems) ? (j!.problems as { text?: string }[]).slice(0, 2).map((p) => p.text).join('; ') : '';
  return `status ${r.code}: ${String(j?.error ?? '') || problems || r.err.trim().split('\n').pop() || r.out.trim()}`;
}

/** The report of test/fuzz/mount-writer.ts. */
interface WriterReport { files: Record<string, string>; steps: number; failures: number; firstFailure: string | null }

const MOUNT_WRITER = path.join(__dirname, 'mount-writer.js');

/** A writer process running in a mount until stopped (test/fuzz/mount-writer.ts). */
class WriterProcess {
  private readonly child: childProcess.ChildProcessWithoutNullStreams;
  private readonly ended: Promise<CommandResult>;
  /** Resolves once its first change is done: the daemon is serving it. */
  readonly started: Promise<void>;

  constructor(dir: string, prefix: string) {
    this.child = childProcess.spawn(process.execPath, [MOUNT_WRITER, dir, prefix]);
    let out = '';
    let err = '';
    let onStart: () => void = () => undefined;
    this.started = new Promise((resolve) => { onStart = resolve; });
    this.child.stdout.on('data', (d: Buffer) => { out += d.toString(); if (out.startsWith('started')) onStart(); });
    this.child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    this.ended = new Promise((resolve) => {
      this.child.on('close', (code) => { onStart(); resolve({ code: code ?? -1, out, err }); });
    });
  }

  /** Tells it to stop and waits for its report (null: it died without one). */
  async stop(): Promise<WriterReport | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.stdin.end('stop\n');
    const r = await this.ended;
    return jsonOf(r) as WriterReport | null;
  }

  /** The last resort when a case failed: it must not keep the mount busy. */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/** One sha256 over a file's extended attributes (sorted names, each followed by its value), as xattrHash computes it; Node has no xattr calls. */
function xattrHashThroughMount(file: string): Promise<CommandResult> {
  return runCommand('python3', ['-c', `import hashlib, os, sys
h = hashlib.sha256()
for n in sorted(os.listxattr(sys.argv[1])):
    h.update(n.encode()); h.update(os.getxattr(sys.argv[1], n))
print(h.hexdigest())`, file]);
}

/** The pristine files and the writers' completed files that differ from what was recorded, read through the mount. */
async function changedThroughMount(mnt: string, hashes: Map<string, string>, written: Record<string, string>): Promise<string[]> {
  const out: string[] = [];
  const sha = (file: string): string => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  // FUSE drops a file's page cache at each open (no keep_cache): these reads reach the daemon.
  for (const [name, want] of [...hashes, ...Object.entries(written)]) {
    try {
      if (name.startsWith('xattr:')) {
        const r = await xattrHashThroughMount(path.join(mnt, name.slice(6)));
        if (r.code !== 0 || r.out.trim() !== want) out.push(r.code !== 0 ? `${name} (${r.err.trim().split('\n').pop() ?? ''})` : name);
      } else if (sha(path.join(mnt, name)) !== want) {
        out.push(name);
      }
    } catch (e) {
      out.push(`${name} (${e instanceof Error ? e.message : String(e)})`);
    }
  }
  return out;
}

/**
 * An online row through a real mount: the fuzzed image mounted by `rmapfs
 * mount` (the daemon a process of its own), a writer process in it while
 * `rmapfs scrub --json` must see the damage (or the case is proven
 * harmless) and `rmapfs repair --json` fixes it (the rmap rows:
 * `--force-rebuild --type rmapbt`), scrub clean, the writer stopped, a
 * strict writer whose every write must succeed, every pristine and written
 * file as recorded through the mount, `rmapfs umount` (which waits for the
 * daemon), `rmapfs check` clean. Each case has its own image and mountpoint:
 * a daemon that outlives a failed case never writes into the next one's.
 */
/** The mountpoint of the mounted case running now: a signal (the regress runner's timeout, Ctrl-C) detaches it before the loop dies. */
let caseMount: string | null = null;

function detachOnSignal(): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      // Lazily: the writer process (its stdin closes with us) and the daemon may still hold it.
      if (caseMount !== null) childProcess.spawnSync('fusermount', ['-uz', caseMount]);
      process.exit(1);
    });
  }
}

async function mountedCase(pristine: string, work: string, c: Case, hashes: Map<string, string>): Promise<Row> {
  const notFuzzed = await fuzzCopy(pristine, work, c);
  if (notFuzzed !== null) {
    fs.rmSync(work);
    return notFuzzed;
  }
  const mnt = `${work}.mnt`;
  fs.mkdirSync(mnt);
  caseMount = mnt;
  const mounted = await rmapfs('mount', work, mnt);
  if (mounted.code !== 0) {
    fs.rmdirSync(mnt);
    return { c, outcome: 'FAIL', detail: `mount failed: ${failureOf(mounted)}` };
  }
  let fail: string | null = null;
  let detected = false;
  let rebuilt: string[] = [];
  let writerSteps: Row['writer'];
  const writer = new WriterProcess(mnt, 'writer');
  try {
    await writer.started;
    const before = await rmapfs('scrub', '--json', mnt);
    const scrubbed = jsonOf(before);
    if (scrubbed === null || before.code > 1) throw new Error(`scrub: ${failureOf(before)}`);
    detected = Number(scrubbed.problemCount) > 0;
    const repaired = await rmapfs('repair', '--json', ...(c.target.tree === 'rmap' ? ['--force-rebuild', '--type', 'rmapbt'] : []), mnt);
    const repairJson = jsonOf(repaired);
    if (repaired.code !== 0 || repairJson === null) throw new Error(`repair: ${failureOf(repaired)}`);
    rebuilt = rebuiltBy(repairJson);
    const after = await rmapfs('scrub', '--json', mnt);
    if (after.code !== 0) throw new Error(`scrub after the repair: ${failureOf(after)}`);
    const report = await writer.stop();
    if (report === null) throw new Error('the writer died without its report');
    writerSteps = { steps: report.steps, failures: report.failures };
    // Repaired means usable: a writer whose every change must succeed.
    const strict = await runCommand(process.execPath, [MOUNT_WRITER, mnt, 'after', '--steps', '30']);
    const strictReport = jsonOf(strict) as WriterReport | null;
    if (strict.code !== 0 || strictReport === null) throw new Error(`a write failed after the repair: ${strictReport?.firstFailure ?? strict.err.trim()}`);
    const changed = await changedThroughMount(mnt, hashes, { ...report.files, ...strictReport.files });
    if (changed.length > 0) throw new Error(`files changed: ${changed.join(', ')}`);
  } catch (e) {
    fail = e instanceof Error ? e.message : String(e);
  } finally {
    writer.kill();
    await writer.stop();
    const unmounted = await rmapfs('umount', mnt);
    if (unmounted.code !== 0) {
      fail ??= `umount: ${failureOf(unmounted)}`;
      // The last resort: detach it, so the next case and the runner's cleanup are not stuck behind it.
      await runCommand('fusermount', ['-uz', mnt]);
    }
    fs.rmdirSync(mnt);
    caseMount = null;
  }
  if (fail === null) {
    const checked = await rmapfs('check', work);
    if (checked.code !== 0) fail = `check after the repair: ${checked.out.trim().split('\n')[0] ?? ''} ${checked.err.trim()}`;
  }
  fs.rmSync(work, { force: true });
  if (fail !== null) return { c, outcome: 'FAIL', detail: fail, rebuilt, writer: writerSteps };
  return { c, outcome: detected ? 'detected+repaired' : 'harmless', detail: '', rebuilt, writer: writerSteps };
}

/** Rows of a table: tree and block, then how many of each outcome (the table's closing lines). */
function countsByTarget(rows: readonly Row[]): string[] {
  const by = new Map<string, Map<Outcome, number>>();
  for (const r of rows) {
    const key = `${r.c.target.tree} ${r.c.target.what}`;
    const counts = by.get(key) ?? new Map<Outcome, number>();
    by.set(key, counts);
    counts.set(r.outcome, (counts.get(r.outcome) ?? 0) + 1);
  }
  return [...by].map(([key, counts]) => `  ${key.padEnd(10)} ${[...counts].map(([o, n]) => `${n} ${o}`).join(', ')}`);
}

async function main(argv: string[]): Promise<number> {
  // --mounted: the online rows only, each through a real mount (mountedCase) rather than in this process.
  const mounted = argv.includes('--mounted');
  // --offline: every row (the primary superblock's too) through `rmapfs repair IMAGE` (offlineCase).
  const offline = argv.includes('--offline');
  if (mounted && offline) throw new Error('--mounted and --offline are two ways to run the rows: give one');
  const online = mounted ? mountedCase : offline ? offlineCase : onlineCase;
  const fileCase = offline ? offlineCase : onlineCase;
  if (mounted) detachOnSignal();
  const sample = Math.max(1, arg(argv, '--sample', 1));
  // --trees rmap,agh,...: only those rows (their first column).
  const treesAt = argv.indexOf('--trees');
  const only = treesAt >= 0 ? new Set((argv[treesAt + 1] ?? '').split(',')) : null;
  const match = argv.includes('--match') ? argv[argv.indexOf('--match') + 1] ?? '' : null;
  const wanted = (...trees: string[]): boolean => only === null || trees.some((t) => only.has(t));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rmapfs-fuzz-'));
  const work = path.join(dir, 'work.img');
  const t0 = Date.now();
  try {
    const rows: Row[] = [];
    const runCases = async (pristine: string, hashes: Map<string, string>, targets: Target[], one: typeof onlineCase): Promise<void> => {
      // --match TEXT: only the cases whose row (tree, block, field, verb, one space apart) holds TEXT.
      const cases = casesFor(targets.filter((t) => wanted(t.tree)))
        .filter((c) => match === null || `${c.target.tree} ${c.target.what} ${c.field} ${c.verb}`.includes(match));
      for (let i = 0; i < cases.length; i += sample) {
        // A mounted case gets an image of its own: a daemon left behind by a failed case writes only into its own.
        const row = await one(pristine, one === mountedCase ? path.join(dir, `case-${i}.img`) : work, cases[i]!, hashes);
        rows.push(row);
        const c = row.c;
        // A repair that rebuilt nothing: its own scrub found the damage gone (a later write set the field again).
        const by = row.outcome !== 'detected+repaired' || row.rebuilt === undefined ? ''
          : row.rebuilt.length > 0 ? ` by ${row.rebuilt.join(',')}`
            : offline ? ' (the report names no repairer)' : ' by the writer (nothing left to rebuild)';
        console.log(`${c.target.tree.padEnd(5)} ${c.target.what.padEnd(5)} ${c.field.padEnd(18)} ${c.verb.padEnd(10)} `
          + `${row.outcome}${row.outcome === 'FAIL' ? `: ${row.detail}` : by}${mark(row)}${reportOf(row)}`);
      }
    };
    // A file row ends with what the report said of the damaged object (its first two lines).
    const reportOf = (row: Row): string => row.reported === undefined || row.reported.length === 0 ? ''
      : ` [report: ${row.reported.slice(0, 2).join('; ')}${row.reported.length > 2 ? `; +${row.reported.length - 2}` : ''}]`;
    // A mounted row says so, with what its writer process did meanwhile.
    const mark = (row: Row): string => !mounted ? ''
      : row.writer === undefined ? ' [mounted]' : ` [mounted; writer: ${row.writer.steps} changes, ${row.writer.failures} failed]`;
    console.log('tree  block field              verb       outcome');
    // Three starting points, each built only when its rows run: one AG for the btrees, the same with
    // 16k inodes for the inode btree's rows, two AGs for the header rows.
    if (wanted('rmap', 'bno', 'cnt', 'bmbt', 'dir', 'attr', 'inode')) {
      const pristine = path.join(dir, 'btrees.img');
      const built = build(pristine, { manyInodes: false, agCount: 1 });
      await runCases(pristine, built.hashes, [...agTargets(pristine, 'rmap'), ...agTargets(pristine, 'bno'), ...agTargets(pristine, 'cnt')], online);
      // The file rows run in this process only: their verdict reads the repair's report (damageVerdict).
      if (!mounted) {
        const damaged = damagedObjects(built);
        await runCases(pristine, built.hashes, [inodeCoreTarget(damaged.big), ...inodeTargets(pristine, damaged.big, 'bmbt'),
          ...inodeTargets(pristine, damaged.dir, 'dir'), ...inodeTargets(pristine, damaged.attrs, 'attr')], fileCase);
      }
      fs.rmSync(pristine);
    }
    if (wanted('ino')) {
      const pristine = path.join(dir, 'inodes.img');
      const built = build(pristine, { manyInodes: true, agCount: 1 });
      await runCases(pristine, built.hashes, agTargets(pristine, 'ino'), online);
      fs.rmSync(pristine);
    }
    if (wanted('agh', 'agfl', 'sb')) {
      const pristine = path.join(dir, 'headers.img');
      const built = build(pristine, { manyInodes: false, agCount: 2 });
      const primary: Target[] = offline ? [{ tree: 'sb', where: 'sb 0', what: PRIMARY_SB_WHAT, fields: SUPERBLOCK_FIELDS.map((f) => f.name) }] : [];
      await runCases(pristine, built.hashes, [...headerTargets(pristine), ...primary], online);
    }
    const count = (o: Outcome): number => rows.filter((r) => r.outcome === o).length;
    for (const line of countsByTarget(rows)) console.log(line);
    console.log(`fuzz-loop${mounted ? ' --mounted' : offline ? ' --offline' : ''}: ${rows.length} cases: ${count('detected+repaired')} detected and repaired, `
      + `${count('harmless')} harmless, ${count('undetectable: valid value')} undetectable (a valid value), ${count('unchanged')} left unchanged by the verb, ${count('n/a')} not fuzzable, `
      + `${count('FAIL')} failures; `
      + `${((Date.now() - t0) / 1000).toFixed(0)} s`);
    return count('FAIL') === 0 ? 0 : 1;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

void main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => {
  process.stderr.write(`fuzz-loop: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exitCode = 1;
});

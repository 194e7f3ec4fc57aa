/**
 * Heavy damage for offline repair (issue 13): a filesystem of many files, a
 * manifest of every name, random bytes over a share of its metadata blocks
 * (found from the rmap), and a check through a mount that every file the
 * damage did not reach is still there with its content.
 *
 *   node heavy-damage.js build IMAGE MANIFEST --files N [--seed S]
 *   node heavy-damage.js damage IMAGE MANIFEST HITS --seed S [--permille P]
 *   node heavy-damage.js verify MNT MANIFEST HITS
 *
 * `build` fills an unmounted image in process (small and large files, some
 * with xattrs, a few directories of many entries, symlinks, hard links) and
 * writes the manifest (JSON: path, inode, type, mode, size, sha256, target,
 * xattrs). `damage` lists the metadata blocks from the rmap of the intact
 * image -- static owners but the log (AG headers, every AG btree, inode
 * chunks) and every inode's bmbt and attr-fork blocks and its directory or
 * symlink blocks -- picks P per mille of them (seeded), writes random bytes
 * over each (the whole block, or a random run in it), and writes which
 * inodes the damage hit (HITS):
 *   - a byte of an inode chunk block lands in one inode: that inode is hit;
 *   - a block an inode owns (its block map btree, attr fork, directory or
 *     symlink blocks) hits that inode;
 *   - the AG's own structures (headers, free-space, inode and rmap btrees,
 *     free list) hit no file: they are rebuilt from what is left.
 * A name is hit when its inode, or a directory on its path, is hit.
 * `verify` reads the repaired filesystem through a mount: every name not hit
 * must be there, same type, mode, size, content (sha256), symlink target and
 * xattrs (python3 reads these: Node has no xattr calls); a hit name may be
 * there, in /lost+found under its inode number, or gone -- counted. Exit 1
 * when a name not hit differs.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as crypto from 'crypto';
import { spawnSync } from 'child_process';
import { Rmapfs } from '../../src/fs/rmapfs';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { INODE_SIZE, INODES_PER_BLOCK } from '../../src/format/geometry';
import { isInodeOwner, OWN_LOG } from '../../src/format/owners';
import { decodeRmap, RMAP_ATTR_FORK, RMAP_BMBT_BLOCK } from '../../src/rmap/rmap-btree';
import { Rng } from '../lib/rng';

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

/** 'special': a FIFO, socket or device -- the build makes none, a damaged mode can (never opened: a FIFO's open waits for a writer). */
type FileType = 'file' | 'dir' | 'symlink' | 'special';

interface ManifestEntry {
  path: string;
  ino: number;
  type: FileType;
  mode: number;
  size: number;
  sha256: string;
  target: string;
  /** name -> sha256 of the value */
  xattrs: Record<string, string>;
}

interface HitReport {
  seed: number;
  metadataBlocks: number;
  damagedBlocks: number;
  /** damaged blocks by what owns them */
  byOwner: Record<string, number>;
  hitInodes: number[];
}

function sha(data: Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

function fileType(mode: number): FileType {
  switch (mode & S_IFMT) {
    case S_IFDIR: return 'dir';
    case S_IFLNK: return 'symlink';
    case S_IFREG: return 'file';
    default: return 'special';
  }
}

// ---- build ----------------------------------------------------------------------------

function build(image: string, manifestPath: string, files: number, seed: number): void {
  const rng = new Rng(seed);
  const fsx = Rmapfs.open(image);
  const root = fsx.rootIno;
  const entries: ManifestEntry[] = [];
  const contents = new Map<number, Buffer>();
  const dirs: { ino: number; path: string }[] = [{ ino: root, path: '' }];
  // A few directories of many entries (a quarter of the files), the rest spread over 40 small ones.
  const bigDirs = 4;
  for (let i = 0; i < bigDirs; i++) {
    const st = fsx.mkdir(root, `big${i}`, 0o755, 0, 0);
    dirs.push({ ino: st.ino, path: `big${i}` });
  }
  const smallDirs: { ino: number; path: string }[] = [];
  for (let i = 0; i < 40; i++) {
    const parent = i < 8 ? { ino: root, path: '' } : smallDirs[i % 8]!;
    const name = `d${i}`;
    const st = fsx.mkdir(parent.ino, name, 0o750, 0, 0);
    const p = parent.path === '' ? name : `${parent.path}/${name}`;
    smallDirs.push({ ino: st.ino, path: p });
  }
  const large: { ino: number; size: number }[] = [];
  let made = 0;
  const bigShare = Math.floor(files / 4);
  while (made < files) {
    const dir = made < bigShare ? dirs[1 + (made % bigDirs)]! : smallDirs[rng.int(smallDirs.length)]!;
    const kind = rng.int(100);
    const name = `f${made}`;
    const p = dir.path === '' ? name : `${dir.path}/${name}`;
    if (kind < 4 && made > 10) {
      // a symlink, to an earlier file (some relative paths will not resolve: a target is a string)
      fsx.symlink(dir.ino, name, `../f${rng.int(made)}`, 0, 0);
    } else if (kind < 7 && made > 10) {
      // a hard link to an earlier regular file
      const earlier = entries[rng.int(entries.length)]!;
      if (earlier.type !== 'file') continue;
      fsx.link(earlier.ino, dir.ino, name);
    } else {
      const st = fsx.create(dir.ino, name, S_IFREG | (0o600 + rng.int(0o200)), 0, 0);
      if (kind < 10) {
        // large, written later in interleaved pieces so that its block map becomes a btree
        large.push({ ino: st.ino, size: (16 + rng.int(48)) * BLOCK_SIZE + rng.int(BLOCK_SIZE) });
      } else {
        const data = crypto.randomBytes(rng.int(3 * BLOCK_SIZE));
        if (data.length > 0) fsx.write(st.ino, 0, data);
        contents.set(st.ino, data);
      }
      if (rng.int(10) === 0) {
        const n = 1 + rng.int(4);
        for (let a = 0; a < n; a++) fsx.setxattr(st.ino, `user.a${a}`, crypto.randomBytes(a === 3 ? 2000 : 1 + rng.int(60)));
      }
    }
    made++;
    entries.push(describe(fsx, fsx.lookup(dir.ino, name), p));
  }
  // Large files: a block at a time in turn, so their extents interleave.
  for (const f of large) contents.set(f.ino, crypto.randomBytes(f.size));
  const written = new Map<number, number>();
  let pending = large.slice();
  while (pending.length > 0) {
    for (const f of pending) {
      const at = written.get(f.ino) ?? 0;
      const data = contents.get(f.ino)!;
      const piece = data.subarray(at, Math.min(data.length, at + BLOCK_SIZE * (1 + (at / BLOCK_SIZE) % 2)));
      fsx.write(f.ino, at, piece);
      written.set(f.ino, at + piece.length);
    }
    pending = pending.filter((f) => written.get(f.ino)! < f.size);
  }
  fsx.fsync();
  // The manifest from what the filesystem now says (sizes after the late writes), content from what was written.
  const manifest = entries.map((e) => describe(fsx, e.ino, e.path, contents.get(e.ino)));
  for (const d of [...dirs, ...smallDirs]) manifest.push(describe(fsx, d.ino, d.path));
  fsx.close();
  fs.writeFileSync(manifestPath, JSON.stringify(manifest.sort((a, b) => (a.path < b.path ? -1 : 1))));
  const counts = countTypes(manifest);
  console.log(`built ${manifest.length} names: ${counts.file} files (${large.length} large), ${counts.dir} directories, `
    + `${counts.symlink} symlinks, ${manifest.filter((e) => Object.keys(e.xattrs).length > 0).length} with xattrs`);
}

function describe(fsx: Rmapfs, ino: number, p: string, content?: Buffer): ManifestEntry {
  const st = fsx.stat(ino);
  const type = fileType(st.mode);
  const xattrs: Record<string, string> = {};
  if (type !== 'symlink') for (const name of fsx.listxattr(ino)) xattrs[name] = sha(fsx.getxattr(ino, name));
  const data = type === 'file' ? (content ?? fsx.read(ino, 0, st.size)) : Buffer.alloc(0);
  return {
    path: p, ino, type, mode: st.mode & 0o7777, size: type === 'dir' ? 0 : st.size, sha256: type === 'file' ? sha(data) : '',
    target: type === 'symlink' ? fsx.readlink(ino).toString('latin1') : '', xattrs,
  };
}

function countTypes(manifest: readonly ManifestEntry[]): Record<FileType, number> {
  const out: Record<FileType, number> = { file: 0, dir: 0, symlink: 0, special: 0 };
  for (const e of manifest) out[e.type]++;
  return out;
}

// ---- damage ---------------------------------------------------------------------------

interface MetadataBlock {
  fsbno: number;
  /** an inode number, or the static owner's name */
  owner: number;
  /** inode chunk block: which inode numbers its slots hold */
  chunkFirstIno: number | null;
}

function metadataBlocks(image: string, manifest: readonly ManifestEntry[]): MetadataBlock[] {
  const typeOf = new Map<number, FileType>();
  for (const e of manifest) typeOf.set(e.ino, e.type);
  const fsx = Rmapfs.open(image, { readOnly: true });
  const geo = fsx.fs.geo;
  typeOf.set(fsx.rootIno, 'dir');
  const out: MetadataBlock[] = [];
  for (const ag of fsx.fs.alloc.ags) {
    ag.rmap.forEach((b, off) => {
      const r = decodeRmap(b, off);
      let metadata: boolean;
      if (isInodeOwner(r.owner)) {
        const t = typeOf.get(r.owner);
        metadata = (r.flags & (RMAP_BMBT_BLOCK | RMAP_ATTR_FORK)) !== 0 || t === 'dir' || t === 'symlink';
      } else {
        metadata = r.owner !== OWN_LOG;
      }
      if (!metadata) return;
      const chunk = r.owner === 5; // OWN_INODES
      for (let i = 0; i < r.blockcount; i++) {
        const agbno = r.startblock + i;
        out.push({ fsbno: geo.fsbno(ag.agno, agbno), owner: r.owner,
          chunkFirstIno: chunk ? geo.ino(ag.agno, agbno * INODES_PER_BLOCK) : null });
      }
    });
  }
  fsx.close();
  return out;
}

function randomBytes(rng: Rng, len: number): Buffer {
  const out = Buffer.alloc(len);
  for (let i = 0; i < len; i++) out[i] = rng.int(256);
  return out;
}

function ownerLabel(m: MetadataBlock): string {
  if (m.chunkFirstIno !== null) return 'inode chunk';
  if (isInodeOwner(m.owner)) return 'file metadata';
  return ['null', 'AG headers', 'log', 'AG btrees and free list', 'inode btree'][m.owner] ?? 'other';
}

function damage(image: string, manifestPath: string, hitsPath: string, seed: number, permille: number): void {
  const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as ManifestEntry[];
  const blocks = metadataBlocks(image, manifest);
  const rng = new Rng(seed);
  const count = Math.max(1, Math.round(blocks.length * permille / 1000));
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(rng.int(blocks.length));
  const hit = new Set<number>();
  const byOwner: Record<string, number> = {};
  const fd = fs.openSync(image, 'r+');
  try {
    for (const i of [...chosen].sort((a, b) => a - b)) {
      const m = blocks[i]!;
      // Half the blocks wholly random, half a random run of 1-512 bytes in them.
      const whole = rng.int(2) === 0;
      const len = whole ? BLOCK_SIZE : 1 + rng.int(512);
      const at = whole ? 0 : rng.int(BLOCK_SIZE - len + 1);
      fs.writeSync(fd, randomBytes(rng, len), 0, len, m.fsbno * BLOCK_SIZE + at);
      byOwner[ownerLabel(m)] = (byOwner[ownerLabel(m)] ?? 0) + 1;
      if (m.chunkFirstIno !== null) {
        for (let slot = Math.floor(at / INODE_SIZE); slot * INODE_SIZE < at + len; slot++) hit.add(m.chunkFirstIno + slot);
      } else if (isInodeOwner(m.owner)) {
        hit.add(m.owner);
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  const report: HitReport = { seed, metadataBlocks: blocks.length, damagedBlocks: count, byOwner, hitInodes: [...hit].sort((a, b) => a - b) };
  fs.writeFileSync(hitsPath, JSON.stringify(report));
  const names = hitNames(manifest, report);
  console.log(`seed ${seed}: random bytes over ${count} of ${blocks.length} metadata blocks `
    + `(${Object.entries(byOwner).sort().map(([k, v]) => `${k} ${v}`).join(', ')}); `
    + `${hit.size} inodes hit, ${names.size} of ${manifest.length} names hit`);
}

/** The names the damage may have cost: their inode, or a directory on their path, hit. */
function hitNames(manifest: readonly ManifestEntry[], report: HitReport): Set<string> {
  const hitInodes = new Set(report.hitInodes);
  const dirIno = new Map<string, number>();
  for (const e of manifest) if (e.type === 'dir') dirIno.set(e.path, e.ino);
  const out = new Set<string>();
  const rootHit = hitInodes.has(rootInoOf(manifest));
  for (const e of manifest) {
    let hit = rootHit || hitInodes.has(e.ino);
    const parts = e.path.split('/');
    for (let i = 1; i < parts.length && !hit; i++) hit = hitInodes.has(dirIno.get(parts.slice(0, i).join('/'))!);
    if (hit) out.add(e.path);
  }
  return out;
}

/** The root's inode number, kept in the manifest as the entry with the empty path (see build). */
function rootInoOf(manifest: readonly ManifestEntry[]): number {
  return manifest.find((e) => e.path === '')?.ino ?? -1;
}

// ---- verify ---------------------------------------------------------------------------

/** Every name's xattrs (name -> sha256 of the value), read through the mount by python3. */
function readXattrs(mnt: string, paths: readonly string[]): Record<string, Record<string, string>> {
  const script = `
import os, sys, json, hashlib
out = {}
for p in json.load(sys.stdin):
    try:
        full = os.path.join(sys.argv[1], p)
        out[p] = {n: hashlib.sha256(os.getxattr(full, n, follow_symlinks=False)).hexdigest()
                  for n in os.listxattr(full, follow_symlinks=False)}
    except OSError:
        pass
json.dump(out, sys.stdout)
`;
  const r = spawnSync('python3', ['-c', script, mnt], { input: JSON.stringify(paths), maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`python3 failed: ${r.stderr.toString()}`);
  return JSON.parse(r.stdout.toString()) as Record<string, Record<string, string>>;
}

/** What the mount shows at `full`, as a manifest entry (null: nothing there). */
function observe(full: string, p: string, xattrs: Record<string, string> | undefined): ManifestEntry | null {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(full);
  } catch {
    return null;
  }
  const type = fileType(st.mode);
  let sha256 = '';
  if (type === 'file') {
    try {
      sha256 = sha(fs.readFileSync(full));
    } catch (e) {
      sha256 = `unreadable: ${(e as Error).message}`;
    }
  }
  return {
    path: p, ino: st.ino, type, mode: st.mode & 0o7777, size: type === 'dir' ? 0 : st.size, sha256,
    target: type === 'symlink' ? fs.readlinkSync(full, { encoding: 'latin1' }) : '', xattrs: xattrs ?? {},
  };
}

function same(a: ManifestEntry, b: ManifestEntry): string | null {
  for (const k of ['type', 'mode', 'size', 'sha256', 'target'] as const) {
    if (a[k] !== b[k]) return `${k} ${String(a[k])} -> ${String(b[k])}`;
  }
  const ax = JSON.stringify(Object.entries(a.xattrs).sort());
  const bx = JSON.stringify(Object.entries(b.xattrs).sort());
  return ax === bx ? null : `xattrs ${ax} -> ${bx}`;
}

function verify(mnt: string, manifestPath: string, hitsPath: string): number {
  const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as ManifestEntry[];
  const report = JSON.parse(fs.readFileSync(hitsPath, 'utf8')) as HitReport;
  const hit = hitNames(manifest, report);
  const lostFound = path.join(mnt, 'lost+found');
  const lostNames = fs.existsSync(lostFound) ? fs.readdirSync(lostFound) : [];
  const xattrs = readXattrs(mnt, [...manifest.map((e) => e.path), ...lostNames.map((n) => `lost+found/${n}`)]);
  const bad: string[] = [];
  const hitCounts = { intact: 0, lostFound: 0, changed: 0, missing: 0 };
  for (const e of manifest) {
    const seen = observe(path.join(mnt, e.path), e.path, xattrs[e.path]);
    const diff = seen === null ? 'missing' : same(e, seen);
    if (!hit.has(e.path)) {
      if (diff !== null) bad.push(`${e.path} (inode ${e.ino}, not hit): ${diff}`);
      continue;
    }
    if (diff === null) {
      hitCounts.intact++;
      continue;
    }
    const lost = lostNames.includes(String(e.ino))
      ? observe(path.join(lostFound, String(e.ino)), e.path, xattrs[`lost+found/${e.ino}`]) : null;
    if (lost !== null && same(e, lost) === null) hitCounts.lostFound++;
    else if (seen === null && lost === null) hitCounts.missing++;
    else hitCounts.changed++;
  }
  const notHit = manifest.length - hit.size;
  console.log(`${notHit - bad.length} of ${notHit} names not hit intact; of ${hit.size} hit: ${hitCounts.intact} intact, `
    + `${hitCounts.lostFound} in /lost+found with their content, ${hitCounts.changed} changed, ${hitCounts.missing} gone; `
    + `${lostNames.length} entries in /lost+found`);
  for (const line of bad.slice(0, 20)) console.log(`NOT HIT BUT CHANGED: ${line}`);
  return bad.length === 0 ? 0 : 1;
}

// ---- main -----------------------------------------------------------------------------

function option(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(args[i + 1]);
  if (!Number.isInteger(v)) throw new Error(`${name} wants an integer`);
  args.splice(i, 2);
  return v;
}

function main(argv: string[]): number {
  const args = argv.slice();
  const verb = args.shift();
  const seed = option(args, '--seed', Number(process.env['RMAPFS_SEED'] ?? 1));
  const files = option(args, '--files', 10000);
  const permille = option(args, '--permille', 10);
  switch (verb) {
    case 'build': build(args[0]!, args[1]!, files, seed); return 0;
    case 'damage': damage(args[0]!, args[1]!, args[2]!, seed, permille); return 0;
    case 'verify': return verify(args[0]!, args[1]!, args[2]!);
    default:
      console.error('usage: heavy-damage build IMAGE MANIFEST --files N [--seed S] | damage IMAGE MANIFEST HITS --seed S [--permille P] | verify MNT MANIFEST HITS');
      return 16;
  }
}

process.exitCode = main(process.argv.slice(2));

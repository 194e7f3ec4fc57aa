/**
 * One fsstress process: random operations in its own directory, each one
 * applied to the model too, then (optionally) a verify pass comparing the
 * whole tree with the model. Every operation is chosen so that it must
 * succeed; any errno but ENOSPC is a failure (ENOSPC is counted, and the
 * operation must then have left no trace).
 */
import * as fs from 'fs';
import * as path from 'path';
import { Rng } from '../lib/rng';
import {
  depth, deserialize, dirPath, expectedContent, isWithin, modelTruncate, modelWrite, patternBytes, serialize,
} from './model';
import type { DirNode, FileNode, Node, SerialModel, SymlinkNode, XattrValue } from './model';
import { XattrHelper } from './xattr';

export const OP_KINDS = ['create', 'write', 'read', 'truncate', 'rename', 'link', 'unlink', 'mkdir', 'rmdir',
  'setxattr', 'removexattr', 'fsync', 'symlink'] as const;
export type OpKind = typeof OP_KINDS[number];

/** Relative frequencies. */
const WEIGHTS: Record<OpKind, number> = {
  create: 8, write: 22, read: 8, truncate: 6, rename: 8, link: 4, unlink: 6, mkdir: 3, rmdir: 2,
  setxattr: 4, removexattr: 2, fsync: 3, symlink: 4,
};

export interface WorkerConfig {
  index: number;
  seed: number;
  /** The target directory; this worker works in `<dir>/p<index>`. */
  dir: string;
  ops: number | null;
  /** Epoch ms after which no new operation starts. */
  deadline: number | null;
  verify: boolean;
  xattrs: boolean;
  maxFiles: number;
  maxFileSize: number;
  maxBytes: number;
  verbose: boolean;
  /** Verify-only: the model saved by an earlier run (no operations). */
  model?: SerialModel;
}

export interface VerifyResult {
  files: number;
  bytes: number;
  differences: number;
}

export interface WorkerResult {
  index: number;
  counts: Record<string, number>;
  ops: number;
  enospc: number;
  failures: number;
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
  xattrNote: string | null;
  verify: VerifyResult | null;
  model: SerialModel;
}

const MAX_PRINTED = 25;
const GIVE_UP = 200;

function errCode(e: unknown): string {
  return typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string'
    ? (e as { code: string }).code : 'EUNKNOWN';
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Mixes the run seed and the worker index into a 32-bit seed. */
function mixSeed(seed: number, index: number, salt: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b1) ^ Math.imul(salt, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}

class Skip extends Error {}

/** Whether a name exists (a dangling symlink too: existsSync would follow it). */
function lexists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

export class Worker {
  private readonly rng: Rng;
  private readonly keys: Rng;
  private readonly base: string;
  private top: DirNode;
  private files: FileNode[] = [];
  private dirs: DirNode[] = [];
  private symlinks: SymlinkNode[] = [];
  private nextId = 1;
  private nameCounter = 0;
  private opNo = 0;
  private readonly counts: Record<string, number> = {};
  private enospc = 0;
  private failures = 0;
  private printed = 0;
  private xattr: XattrHelper | null = null;
  private xattrNote: string | null = null;
  private verifying = false;

  constructor(private readonly cfg: WorkerConfig) {
    this.rng = new Rng(mixSeed(cfg.seed, cfg.index, 1));
    this.keys = new Rng(mixSeed(cfg.seed, cfg.index, 2));
    this.base = path.resolve(cfg.dir);
    this.top = { kind: 'dir', id: 0, parent: null, name: `p${cfg.index}`, entries: new Map(), xattrs: new Map(), tainted: false };
    for (const k of OP_KINDS) this.counts[k] = 0;
    if (cfg.model !== undefined) this.adopt(deserialize(cfg.model));
    if (cfg.xattrs) {
      const h = XattrHelper.start();
      if (typeof h === 'string') this.xattrNote = `xattrs skipped: ${h}`;
      else this.xattr = h;
    } else {
      this.xattrNote = 'xattrs skipped (--no-xattr)';
    }
  }

  /** Takes over a saved model (verify-only). */
  private adopt(top: DirNode): void {
    this.top = top;
    const walk = (d: DirNode): void => {
      this.dirs.push(d);
      for (const n of d.entries.values()) {
        if (n.kind === 'dir') walk(n);
        else if (n.kind === 'symlink') this.symlinks.push(n);
        else if (!this.files.includes(n)) this.files.push(n);
      }
    };
    walk(top);
  }

  // ---- helpers ----

  private abs(d: DirNode, name?: string): string {
    const rel = dirPath(d);
    return name === undefined ? path.join(this.base, rel) : path.join(this.base, rel, name);
  }

  private pick<T>(list: readonly T[]): T | undefined {
    return list.length === 0 ? undefined : list[this.rng.int(list.length)];
  }

  private between(lo: number, hi: number): number {
    return lo + this.rng.int(hi - lo + 1);
  }

  private newKey(): number {
    return Math.floor(this.keys.next() * 4294967296) >>> 0;
  }

  /** A fresh name; now and then a long one (up to 200 bytes) for the directory code. */
  private freshName(prefix: string): string {
    const n = `${prefix}${this.nameCounter++}`;
    if (this.rng.int(20) !== 0) return n;
    const len = this.between(20, 200);
    const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789_-.';
    let s = `${n}_`;
    while (s.length < len) s += alphabet[this.rng.int(alphabet.length)];
    return s;
  }

  private liveFiles(): FileNode[] {
    return this.files.filter((f) => !f.tainted);
  }

  private liveDirs(): DirNode[] {
    return this.dirs.filter((d) => !d.tainted);
  }

  private pickDir(maxDepth = Infinity): DirNode {
    const ok = this.liveDirs().filter((d) => depth(d) < maxDepth);
    return this.pick(ok) ?? this.top;
  }

  private fileBytes(): number {
    let n = 0;
    for (const f of this.files) n += f.size;
    return n;
  }

  private note(line: string): void {
    if (this.printed < MAX_PRINTED) process.stderr.write(`fsstress: p${this.cfg.index}: ${line}\n`);
    else if (this.printed === MAX_PRINTED) process.stderr.write(`fsstress: p${this.cfg.index}: (more failures not shown)\n`);
    this.printed++;
  }

  private fail(what: string, e?: unknown): void {
    this.failures++;
    const where = this.verifying ? 'verify' : `op ${this.opNo}`;
    this.note(e === undefined ? `${where}: ${what}` : `${where}: ${what}: ${errCode(e)} (${errText(e)})`);
  }

  private trace(what: string): void {
    if (this.cfg.verbose) process.stderr.write(`p${this.cfg.index} #${this.opNo} ${what}\n`);
  }

  /** After ENOSPC: the name must not exist (the operation left no trace). */
  private expectAbsent(p: string, what: string): void {
    try {
      fs.lstatSync(p);
      this.fail(`${what}: failed with ENOSPC but ${path.relative(this.base, p)} exists`);
    } catch (e) {
      if (errCode(e) !== 'ENOENT') this.fail(`${what}: lstat after ENOSPC`, e);
    }
  }

  private addLink(f: FileNode, d: DirNode, name: string): void {
    f.links.push({ dir: d, name });
    d.entries.set(name, f);
  }

  /** Takes a name away from the model (the entry in d). */
  private dropName(d: DirNode, name: string): void {
    const n = d.entries.get(name);
    if (n === undefined) return;
    d.entries.delete(name);
    if (n.kind === 'file') {
      n.links = n.links.filter((l) => !(l.dir === d && l.name === name));
      if (n.links.length === 0) this.files = this.files.filter((x) => x !== n);
    } else if (n.kind === 'symlink') {
      this.symlinks = this.symlinks.filter((x) => x !== n);
    } else {
      this.dirs = this.dirs.filter((x) => x !== n);
    }
  }

  // ---- operations ----

  private chooseOp(): OpKind {
    let total = 0;
    for (const k of OP_KINDS) total += WEIGHTS[k];
    let r = this.rng.next() * total;
    for (const k of OP_KINDS) {
      r -= WEIGHTS[k];
      if (r < 0) return k;
    }
    return 'write';
  }

  private async doOp(kind: OpKind): Promise<OpKind> {
    switch (kind) {
      case 'create': return this.opCreate();
      case 'write': return this.opWrite();
      case 'read': return this.opRead();
      case 'truncate': return this.opTruncate();
      case 'rename': return this.opRename();
      case 'link': return this.opLink();
      case 'unlink': return this.opUnlink();
      case 'mkdir': return this.opMkdir();
      case 'rmdir': return this.opRmdir();
      case 'setxattr': return this.opSetxattr();
      case 'removexattr': return this.opRemovexattr();
      case 'fsync': return this.opFsync();
      case 'symlink': return this.opSymlink();
    }
  }

  private opCreate(): OpKind {
    if (this.files.length + this.symlinks.length >= this.cfg.maxFiles) return this.opUnlink();
    const d = this.pickDir();
    const name = this.freshName('f');
    const p = this.abs(d, name);
    this.trace(`create ${path.relative(this.base, p)}`);
    try {
      fs.closeSync(fs.openSync(p, 'wx', 0o644));
    } catch (e) {
      if (errCode(e) !== 'ENOSPC') throw e;
      this.enospc++;
      this.expectAbsent(p, 'create');
      return 'create';
    }
    const f: FileNode = { kind: 'file', id: this.nextId++, size: 0, segs: [], links: [], xattrs: new Map(), tainted: false };
    this.addLink(f, d, name);
    this.files.push(f);
    return 'create';
  }

  private writeLength(): number {
    const r = this.rng.int(100);
    if (r < 70) return this.between(1, 16384);
    if (r < 95) return this.between(1, 131072);
    return this.between(1, 1048576);
  }

  private opWrite(): OpKind {
    const f = this.pick(this.liveFiles());
    if (f === undefined) return this.opCreate();
    const link = f.links[0]!;
    const p = this.abs(link.dir, link.name);
    const max = this.cfg.maxFileSize;
    let len = Math.min(this.writeLength(), max);
    let off: number;
    let append = false;
    const mode = this.rng.int(100);
    if (mode < 30) off = f.size; // append at the known end
    else if (mode < 60) off = f.size === 0 ? 0 : this.rng.int(f.size); // overwrite
    else if (mode < 75) off = f.size + this.rng.int(1 << 20); // past EOF: a hole
    else if (mode < 90) off = this.rng.int(max); // anywhere
    else {
      off = f.size; // O_APPEND
      append = true;
    }
    if (off + len > max) {
      if (append || off >= max) return this.opTruncate(f);
      len = max - off;
    }
    if (this.fileBytes() - f.size + Math.max(f.size, off + len) > this.cfg.maxBytes) return this.opTruncate(f);
    const key = this.newKey();
    const buf = patternBytes(key, off, len);
    this.trace(`write ${path.relative(this.base, p)} ${append ? 'append ' : ''}${off}+${len}`);
    let fd: number;
    try {
      fd = fs.openSync(p, append ? 'a' : 'r+');
    } catch (e) {
      if (errCode(e) === 'ENOSPC') {
        this.enospc++;
        return 'write';
      }
      throw e;
    }
    let done = 0;
    try {
      while (done < len) {
        const n = fs.writeSync(fd, buf, done, len - done, append ? null : off + done);
        if (n <= 0) throw Object.assign(new Error('write returned 0'), { code: 'EIO' });
        done += n;
      }
    } catch (e) {
      modelWrite(f, off, done, key);
      if (errCode(e) !== 'ENOSPC') {
        f.tainted = true;
        throw e;
      }
      this.enospc++;
      this.checkFile(f, 'after ENOSPC in write');
      return 'write';
    } finally {
      fs.closeSync(fd);
    }
    modelWrite(f, off, len, key);
    return 'write';
  }

  private opRead(): OpKind {
    const f = this.pick(this.liveFiles());
    if (f === undefined) return this.opCreate();
    const link = f.links[this.rng.int(f.links.length)]!;
    const p = this.abs(link.dir, link.name);
    const off = f.size === 0 ? 0 : this.rng.int(f.size);
    const len = Math.min(this.between(1, 262144), f.size - off);
    this.trace(`read ${path.relative(this.base, p)} ${off}+${len}`);
    const fd = fs.openSync(p, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      if (size !== f.size) {
        this.fail(`read ${path.relative(this.base, p)}: size ${size}, expected ${f.size}`);
        f.tainted = true;
        return 'read';
      }
      this.compareRange(fd, f, off, len, p);
    } finally {
      fs.closeSync(fd);
    }
    return 'read';
  }

  /** Reads [off, off + len) and compares; returns whether it matched. */
  private compareRange(fd: number, f: FileNode, off: number, len: number, p: string, why = ''): boolean {
    const got = Buffer.alloc(len);
    let done = 0;
    while (done < len) {
      const n = fs.readSync(fd, got, done, len - done, off + done);
      if (n === 0) break;
      done += n;
    }
    const want = expectedContent(f, off, len);
    if (done === len && got.equals(want)) return true;
    let at = 0;
    while (at < done && got[at] === want[at]) at++;
    this.fail(`${path.relative(this.base, p)}${why}: content differs at offset ${off + at} `
      + `(read ${done} of ${len} bytes from ${off}; got ${got[at]?.toString(16) ?? 'EOF'}, expected ${want[at]?.toString(16)})`);
    f.tainted = true;
    return false;
  }

  /** Whole-file check: size and content (after ENOSPC, and in verify). */
  private checkFile(f: FileNode, why: string): boolean {
    const link = f.links[0]!;
    const p = this.abs(link.dir, link.name);
    const fd = fs.openSync(p, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      if (size !== f.size) {
        this.fail(`${path.relative(this.base, p)} ${why}: size ${size}, expected ${f.size}`);
        f.tainted = true;
        return false;
      }
      for (let off = 0; off < f.size; off += 1 << 20) {
        if (!this.compareRange(fd, f, off, Math.min(1 << 20, f.size - off), p, ` ${why}`)) return false;
      }
    } finally {
      fs.closeSync(fd);
    }
    return true;
  }

  private opTruncate(given?: FileNode): OpKind {
    const f = given ?? this.pick(this.liveFiles());
    if (f === undefined) return this.opCreate();
    const link = f.links[this.rng.int(f.links.length)]!;
    const p = this.abs(link.dir, link.name);
    let size: number;
    const roomy = this.fileBytes() < this.cfg.maxBytes * 0.8;
    if (f.size > 0 && (this.rng.int(2) === 0 || !roomy || given !== undefined)) size = this.rng.int(f.size);
    else size = Math.min(this.cfg.maxFileSize, f.size + this.between(1, 262144));
    this.trace(`truncate ${path.relative(this.base, p)} ${f.size} -> ${size}`);
    try {
      if (this.rng.int(2) === 0) {
        fs.truncateSync(p, size);
      } else {
        const fd = fs.openSync(p, 'r+');
        try {
          fs.ftruncateSync(fd, size);
        } finally {
          fs.closeSync(fd);
        }
      }
    } catch (e) {
      if (errCode(e) !== 'ENOSPC') {
        f.tainted = true;
        throw e;
      }
      this.enospc++;
      this.checkFile(f, 'after ENOSPC in truncate');
      return 'truncate';
    }
    modelTruncate(f, size);
    return 'truncate';
  }

  private opRename(): OpKind {
    // What moves: a file's name, a symlink or a directory.
    const r = this.rng.int(10);
    let src: Node | undefined;
    let srcDir: DirNode;
    let srcName: string;
    if (r < 5) {
      const f = this.pick(this.liveFiles());
      if (f === undefined) return this.opCreate();
      const l = f.links[this.rng.int(f.links.length)]!;
      src = f;
      srcDir = l.dir;
      srcName = l.name;
    } else if (r < 7) {
      const s = this.pick(this.symlinks);
      if (s === undefined) return this.opSymlink();
      src = s;
      srcDir = s.parent;
      srcName = s.name;
    } else {
      const d = this.pick(this.liveDirs().filter((x) => x.parent !== null));
      if (d === undefined) return this.opMkdir();
      src = d;
      srcDir = d.parent!;
      srcName = d.name;
    }
    if (srcDir.tainted) throw new Skip();
    // Where to: a directory not inside the one that moves, a fresh name or (for non-directories) over another.
    let dst = this.pickDir();
    if (src.kind === 'dir' && isWithin(dst, src)) dst = srcDir;
    let dstName: string | undefined;
    if (src.kind !== 'dir' && this.rng.int(4) === 0) {
      const victims = [...dst.entries].filter(([n, v]) => v.kind !== 'dir' && !(dst === srcDir && n === srcName)
        && !(v.kind === 'file' && v.tainted));
      dstName = this.pick(victims)?.[0];
    }
    dstName ??= this.freshName(src.kind === 'dir' ? 'd' : src.kind === 'symlink' ? 's' : 'r');
    const from = this.abs(srcDir, srcName);
    const to = this.abs(dst, dstName);
    this.trace(`rename ${path.relative(this.base, from)} -> ${path.relative(this.base, to)}`);
    const victim = dst.entries.get(dstName);
    try {
      fs.renameSync(from, to);
    } catch (e) {
      if (errCode(e) !== 'ENOSPC') {
        if (src.kind === 'file') src.tainted = true;
        if (src.kind === 'dir') src.tainted = true;
        throw e;
      }
      this.enospc++;
      const toNow = lexists(to) ? 'exists' : 'does not exist';
      if (!lexists(from)) this.fail(`rename: failed with ENOSPC but ${path.relative(this.base, from)} is gone (${path.relative(this.base, to)} ${toNow}${victim !== undefined ? ', it was there before' : ''})`);
      else if (victim === undefined && toNow === 'exists') this.fail(`rename: failed with ENOSPC but ${path.relative(this.base, to)} exists`);
      return 'rename';
    }
    if (victim !== undefined && victim === src) return 'rename'; // two links of one file: rename does nothing
    if (victim !== undefined) this.dropName(dst, dstName);
    srcDir.entries.delete(srcName);
    dst.entries.set(dstName, src);
    if (src.kind === 'file') {
      const l = src.links.find((x) => x.dir === srcDir && x.name === srcName)!;
      l.dir = dst;
      l.name = dstName;
    } else {
      src.parent = dst;
      src.name = dstName;
    }
    return 'rename';
  }

  private opLink(): OpKind {
    const f = this.pick(this.liveFiles().filter((x) => x.links.length < 8));
    if (f === undefined) return this.opCreate();
    const l = f.links[0]!;
    const d = this.pickDir();
    const name = this.freshName('l');
    const from = this.abs(l.dir, l.name);
    const to = this.abs(d, name);
    this.trace(`link ${path.relative(this.base, from)} ${path.relative(this.base, to)}`);
    try {
      fs.linkSync(from, to);
    } catch (e) {
      if (errCode(e) !== 'ENOSPC') throw e;
      this.enospc++;
      this.expectAbsent(to, 'link');
      return 'link';
    }
    this.addLink(f, d, name);
    return 'link';
  }

  private opUnlink(): OpKind {
    const names: [DirNode, string][] = [];
    for (const f of this.files) for (const l of f.links) names.push([l.dir, l.name]);
    for (const s of this.symlinks) names.push([s.parent, s.name]);
    const choice = this.pick(names.filter(([d]) => !d.tainted));
    if (choice === undefined) return this.opCreate();
    const [d, name] = choice;
    const p = this.abs(d, name);
    this.trace(`unlink ${path.relative(this.base, p)}`);
    fs.unlinkSync(p);
    this.dropName(d, name);
    return 'unlink';
  }

  private opMkdir(): OpKind {
    if (this.dirs.length >= Math.max(4, this.cfg.maxFiles / 4)) return this.opRmdir();
    const d = this.pickDir(5);
    const name = this.freshName('d');
    const p = this.abs(d, name);
    this.trace(`mkdir ${path.relative(this.base, p)}`);
    try {
      fs.mkdirSync(p, 0o755);
    } catch (e) {
      if (errCode(e) !== 'ENOSPC') throw e;
      this.enospc++;
      this.expectAbsent(p, 'mkdir');
      return 'mkdir';
    }
    const nd: DirNode = { kind: 'dir', id: this.nextId++, parent: d, name, entries: new Map(), xattrs: new Map(), tainted: false };
    d.entries.set(name, nd);
    this.dirs.push(nd);
    return 'mkdir';
  }

  /** Removes a directory without subdirectories, unlinking its few entries first. */
  private opRmdir(): OpKind {
    const candidates = this.liveDirs().filter((d) => d.parent !== null && d.entries.size <= 3
      && [...d.entries.values()].every((n) => n.kind !== 'dir'));
    const d = this.pick(candidates);
    if (d === undefined) return this.opMkdir();
    for (const name of [...d.entries.keys()]) {
      const p = this.abs(d, name);
      this.trace(`unlink ${path.relative(this.base, p)} (to empty its directory)`);
      fs.unlinkSync(p);
      this.dropName(d, name);
      this.counts.unlink = (this.counts.unlink ?? 0) + 1;
    }
    const p = this.abs(d);
    this.trace(`rmdir ${path.relative(this.base, p)}`);
    fs.rmdirSync(p);
    this.dropName(d.parent!, d.name);
    return 'rmdir';
  }

  /** A file or directory to hang xattrs on (symlinks cannot have user.* attributes). */
  private xattrTarget(withAttrs: boolean): [FileNode | DirNode, string] | undefined {
    const pool: (FileNode | DirNode)[] = [...this.liveFiles(), ...this.liveDirs()]
      .filter((n) => !withAttrs || n.xattrs.size > 0);
    const n = this.pick(pool);
    if (n === undefined) return undefined;
    if (n.kind === 'file') {
      const l = n.links[this.rng.int(n.links.length)]!;
      return [n, this.abs(l.dir, l.name)];
    }
    return [n, this.abs(n)];
  }

  private async opSetxattr(): Promise<OpKind> {
    if (this.xattr === null) return this.opWrite();
    const t = this.xattrTarget(false);
    if (t === undefined) return this.opCreate();
    const [n, p] = t;
    const name = `user.a${this.rng.int(8)}`;
    const r = this.rng.int(100);
    const len = r < 80 ? this.rng.int(100) : r < 95 ? this.between(100, 1000) : this.between(1000, 8000);
    const key = this.newKey();
    this.trace(`setxattr ${path.relative(this.base, p)} ${name} ${len}`);
    try {
      await this.xattr.set(p, name, patternBytes(key, 0, len));
    } catch (e) {
      if (errCode(e) !== 'ENOSPC') {
        n.tainted = true;
        throw e;
      }
      this.enospc++;
      return 'setxattr';
    }
    n.xattrs.set(name, { key, len });
    return 'setxattr';
  }

  private async opRemovexattr(): Promise<OpKind> {
    if (this.xattr === null) return this.opWrite();
    const t = this.xattrTarget(true);
    if (t === undefined) return this.opSetxattr();
    const [n, p] = t;
    const name = this.pick([...n.xattrs.keys()])!;
    this.trace(`removexattr ${path.relative(this.base, p)} ${name}`);
    try {
      await this.xattr.remove(p, name);
    } catch (e) {
      if (errCode(e) !== 'ENOSPC') {
        n.tainted = true;
        throw e;
      }
      this.enospc++;
      return 'removexattr';
    }
    n.xattrs.delete(name);
    return 'removexattr';
  }

  private opFsync(): OpKind {
    if (this.rng.int(5) === 0) {
      const d = this.pickDir();
      this.trace(`fsync dir ${path.relative(this.base, this.abs(d))}`);
      const fd = fs.openSync(this.abs(d), 'r');
      try {
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      return 'fsync';
    }
    const f = this.pick(this.liveFiles());
    if (f === undefined) return this.opCreate();
    const l = f.links[0]!;
    const p = this.abs(l.dir, l.name);
    const data = this.rng.int(2) === 0;
    this.trace(`${data ? 'fdatasync' : 'fsync'} ${path.relative(this.base, p)}`);
    const fd = fs.openSync(p, 'r+');
    try {
      if (data) fs.fdatasyncSync(fd);
      else fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    return 'fsync';
  }

  private opSymlink(): OpKind {
    if (this.files.length + this.symlinks.length >= this.cfg.maxFiles) return this.opUnlink();
    const d = this.pickDir();
    const name = this.freshName('s');
    const r = this.rng.int(100);
    const len = r < 70 ? this.between(1, 60) : r < 95 ? this.between(60, 600) : this.between(600, 2000);
    const alphabet = 'abcdefghijklmnopqrstuvwxyz./_-0123456789';
    let target = '';
    while (target.length < len) target += alphabet[this.rng.int(alphabet.length)];
    const p = this.abs(d, name);
    this.trace(`symlink ${path.relative(this.base, p)} (${len} bytes)`);
    try {
      fs.symlinkSync(target, p);
    } catch (e) {
      if (errCode(e) !== 'ENOSPC') throw e;
      this.enospc++;
      this.expectAbsent(p, 'symlink');
      return 'symlink';
    }
    const s: SymlinkNode = { kind: 'symlink', id: this.nextId++, target, parent: d, name };
    d.entries.set(name, s);
    this.symlinks.push(s);
    return 'symlink';
  }

  // ---- the run ----

  async run(): Promise<WorkerResult> {
    let verify: VerifyResult | null = null;
    if (this.cfg.model === undefined) {
      const topPath = this.abs(this.top);
      fs.rmSync(topPath, { recursive: true, force: true });
      fs.mkdirSync(topPath, { recursive: true });
      this.dirs.push(this.top);
      const limit = this.cfg.ops;
      while ((limit === null || this.opNo < limit) && (this.cfg.deadline === null || Date.now() < this.cfg.deadline)) {
        this.opNo++;
        const kind = this.chooseOp();
        try {
          const did = await this.doOp(kind);
          this.counts[did] = (this.counts[did] ?? 0) + 1;
        } catch (e) {
          if (e instanceof Skip) continue;
          this.fail(`${kind} (see -v for the operation)`, e);
          if (this.failures >= GIVE_UP) {
            this.note(`${GIVE_UP} failures: giving up`);
            break;
          }
        }
      }
    }
    if (this.cfg.verify) verify = await this.verifyAll();
    this.xattr?.close();
    let ops = 0;
    for (const k of OP_KINDS) ops += this.counts[k] ?? 0;
    return {
      index: this.cfg.index, counts: this.counts, ops, enospc: this.enospc, failures: this.failures,
      files: this.files.length, dirs: this.dirs.length - 1, symlinks: this.symlinks.length, bytes: this.fileBytes(),
      xattrNote: this.xattrNote, verify, model: serialize(this.top),
    };
  }

  // ---- verify ----

  private async verifyXattrs(n: FileNode | DirNode, p: string, v: VerifyResult): Promise<void> {
    if (this.xattr === null) return;
    const rel = path.relative(this.base, p);
    try {
      const names = (await this.xattr.list(p)).filter((x) => x.startsWith('user.')).sort();
      const want = [...n.xattrs.keys()].sort();
      if (names.join(',') !== want.join(',')) {
        v.differences++;
        this.fail(`${rel}: xattrs [${names.join(', ')}], expected [${want.join(', ')}]`);
        return;
      }
      for (const [name, val] of n.xattrs as Map<string, XattrValue>) {
        const got = await this.xattr.get(p, name);
        if (!got.equals(patternBytes(val.key, 0, val.len))) {
          v.differences++;
          this.fail(`${rel}: xattr ${name} differs (${got.length} bytes, expected ${val.len})`);
        }
      }
    } catch (e) {
      v.differences++;
      this.fail(`${rel}: xattrs`, e);
    }
  }

  private async verifyAll(): Promise<VerifyResult> {
    const v: VerifyResult = { files: 0, bytes: 0, differences: 0 };
    this.verifying = true;
    const seen = new Set<FileNode>();
    const visit = async (d: DirNode): Promise<void> => {
      const p = this.abs(d);
      const rel = path.relative(this.base, p);
      let actual: fs.Dirent[];
      try {
        actual = fs.readdirSync(p, { withFileTypes: true });
      } catch (e) {
        v.differences++;
        this.fail(`${rel}: readdir`, e);
        return;
      }
      const have = new Set(actual.map((x) => x.name));
      for (const name of have) {
        if (!d.entries.has(name)) {
          v.differences++;
          this.fail(`${rel}/${name} exists but should not`);
        }
      }
      if (!d.tainted) await this.verifyXattrs(d, p, v);
      for (const [name, n] of d.entries) {
        const np = path.join(p, name);
        const nrel = `${rel}/${name}`;
        if (!have.has(name)) {
          v.differences++;
          this.fail(`${nrel} is missing`);
          continue;
        }
        let st: fs.Stats;
        try {
          st = fs.lstatSync(np);
        } catch (e) {
          v.differences++;
          this.fail(`${nrel}: lstat`, e);
          continue;
        }
        if (n.kind === 'dir') {
          if (!st.isDirectory()) {
            v.differences++;
            this.fail(`${nrel} is not a directory`);
          } else if (!n.tainted) {
            await visit(n);
          }
        } else if (n.kind === 'symlink') {
          if (!st.isSymbolicLink()) {
            v.differences++;
            this.fail(`${nrel} is not a symlink`);
            continue;
          }
          const target = fs.readlinkSync(np);
          if (target !== n.target) {
            v.differences++;
            this.fail(`${nrel} points to '${target.slice(0, 40)}...' (${target.length} bytes), expected ${n.target.length} bytes`);
          }
        } else {
          if (!st.isFile()) {
            v.differences++;
            this.fail(`${nrel} is not a regular file`);
            continue;
          }
          if (n.tainted) continue;
          if (st.nlink !== n.links.length) {
            v.differences++;
            this.fail(`${nrel} has ${st.nlink} links, expected ${n.links.length}`);
          }
          if (seen.has(n)) continue;
          seen.add(n);
          v.files++;
          v.bytes += n.size;
          const before = this.failures;
          try {
            if (!this.checkFile(n, 'in verify')) v.differences += this.failures - before;
          } catch (e) {
            v.differences++;
            this.fail(`${nrel}: read`, e);
          }
          await this.verifyXattrs(n, np, v);
        }
      }
    };
    await visit(this.top);
    return v;
  }
}

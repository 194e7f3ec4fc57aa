/**
 * 20,000 random filesystem operations (create, write at random offsets,
 * truncate, unlink, rename, mkdir, rmdir, link, symlink, setxattr, removexattr) against a plain
 * in-memory model. Afterwards the filesystem checks clean and every file's
 * content and metadata equal the model's -- and again after close and
 * reopen, and after a crash (journal replay) at the last fsync.
 */
import t from 'tap';
import * as crypto from 'crypto';
import { Rmapfs } from '../../src/fs/rmapfs';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../../src/inode/inode-format';
import { Rng, testSeed } from '../lib/rng';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

type Node =
  | { kind: 'file'; data: Buffer; nlink: number }
  | { kind: 'dir'; entries: Map<string, number> }
  | { kind: 'link'; target: string };

class Model {
  nodes = new Map<number, Node>();
  /** Extended attributes by node. */
  xattrs = new Map<number, Map<string, Buffer>>();
  /** Ids of files and of directories, kept as the nodes come and go (picking from them is the hot path). */
  private readonly lists = { file: new IdList(), dir: new IdList() };
  constructor(readonly root: number) {
    this.set(root, { kind: 'dir', entries: new Map() });
  }
  set(id: number, node: Node): void {
    this.nodes.set(id, node);
    if (node.kind !== 'link') this.lists[node.kind].add(id);
  }
  remove(id: number): void {
    const node = this.nodes.get(id);
    if (node !== undefined && node.kind !== 'link') this.lists[node.kind].remove(id);
    this.nodes.delete(id);
    this.xattrs.delete(id);
  }
  files(): number[] {
    return this.lists.file.ids;
  }
  dir(id: number): Map<string, number> {
    const n = this.nodes.get(id)!;
    if (n.kind !== 'dir') throw new Error('not a dir');
    return n.entries;
  }
  dirs(): number[] {
    return this.lists.dir.ids;
  }
  clone(): Model {
    const m = new Model(this.root);
    for (const [id, n] of this.nodes) {
      m.set(id, n.kind === 'file' ? { kind: 'file', data: Buffer.from(n.data), nlink: n.nlink }
        : n.kind === 'dir' ? { kind: 'dir', entries: new Map(n.entries) } : { ...n });
    }
    for (const [id, x] of this.xattrs) m.xattrs.set(id, new Map(x));
    return m;
  }
}

/** A set of ids with O(1) add, remove and random pick. */
class IdList {
  readonly ids: number[] = [];
  private readonly at = new Map<number, number>();
  add(id: number): void {
    if (this.at.has(id)) return;
    this.at.set(id, this.ids.length);
    this.ids.push(id);
  }
  remove(id: number): void {
    const i = this.at.get(id);
    if (i === undefined) return;
    const last = this.ids.pop()!;
    if (last !== id) {
      this.ids[i] = last;
      this.at.set(last, i);
    }
    this.at.delete(id);
  }
}

/** Compares the whole tree with the model; returns differences. */
function compare(fsx: Rmapfs, model: Model): string[] {
  const diffs: string[] = [];
  const walk = (dirIno: number, path: string): void => {
    const want = model.dir(dirIno);
    const got = fsx.readdir(dirIno).filter((e) => e.name !== '.' && e.name !== '..');
    const gotNames = got.map((e) => e.name).sort();
    const wantNames = [...want.keys()].sort();
    if (gotNames.join('/') !== wantNames.join('/')) {
      diffs.push(`${path}: entries [${gotNames.join(',')}] want [${wantNames.join(',')}]`);
      return;
    }
    for (const e of got) {
      const id = want.get(e.name)!;
      const wantX = model.xattrs.get(id) ?? new Map<string, Buffer>();
      const gotX = fsx.listxattr(e.ino).sort();
      if (gotX.join() !== [...wantX.keys()].sort().join()) diffs.push(`${path}/${e.name}: xattrs [${gotX.join()}]`);
      else for (const [k, v] of wantX) if (!fsx.getxattr(e.ino, k).equals(v)) diffs.push(`${path}/${e.name}: xattr ${k} differs`);
      if (e.ino !== id) diffs.push(`${path}/${e.name}: inode ${e.ino}, want ${id}`);
      const node = model.nodes.get(id)!;
      const st = fsx.stat(e.ino);
      if (node.kind === 'file') {
        if ((st.mode & S_IFMT) !== S_IFREG) diffs.push(`${path}/${e.name}: not a file`);
        if (st.size !== node.data.length) diffs.push(`${path}/${e.name}: size ${st.size}, want ${node.data.length}`);
        if (st.nlink !== node.nlink) diffs.push(`${path}/${e.name}: nlink ${st.nlink}, want ${node.nlink}`);
        const data = fsx.read(e.ino, 0, node.data.length + 10);
        if (!data.equals(node.data)) diffs.push(`${path}/${e.name}: content differs`);
      } else if (node.kind === 'link') {
        if ((st.mode & S_IFMT) !== S_IFLNK) diffs.push(`${path}/${e.name}: not a symlink`);
        if (fsx.readlink(e.ino).toString() !== node.target) diffs.push(`${path}/${e.name}: wrong target`);
      } else {
        if ((st.mode & S_IFMT) !== S_IFDIR) diffs.push(`${path}/${e.name}: not a directory`);
        walk(e.ino, `${path}/${e.name}`);
      }
    }
  };
  walk(model.root, '');
  return diffs;
}

t.test('20,000 random operations agree with a model, check clean, survive reopen and crash', (t) => {
  const image = scratchImage(t, { size: 256 << 20 });
  let fsx = Rmapfs.open(image);
  const rng = new Rng(testSeed(20000));
  const model = new Model(fsx.rootIno);
  let fsynced = model.clone();
  const pick = <T>(xs: T[]): T => xs[rng.int(xs.length)]!;
  const name = (): string => `n${rng.int(400)}${rng.next() < 0.05 ? 'x'.repeat(rng.int(200)) : ''}`;
  const counts: Record<string, number> = {};
  let errors = 0;
  for (let step = 0; step < 20000; step++) {
    const dirs = model.dirs();
    const dirId = pick(dirs);
    const entries = model.dir(dirId);
    const files = model.files();
    const r = rng.next();
    let op = '';
    try {
      if (r < 0.2 || files.length === 0) {
        op = 'create';
        const nm = name();
        if (entries.has(nm)) continue;
        const st = fsx.create(dirId, nm, S_IFREG | 0o644, 1000, 1000);
        model.set(st.ino, { kind: 'file', data: Buffer.alloc(0), nlink: 1 });
        entries.set(nm, st.ino);
      } else if (r < 0.5) {
        op = 'write';
        const id = pick(files);
        const node = model.nodes.get(id) as { kind: 'file'; data: Buffer; nlink: number };
        const pos = node.data.length > 300000 ? rng.int(300000) : rng.next() < 0.7 ? node.data.length : rng.int(node.data.length + 40000);
        const len = 1 + rng.int(rng.next() < 0.05 ? 100000 : 8000);
        const data = crypto.randomBytes(len);
        fsx.write(id, pos, data);
        const grown = Buffer.alloc(Math.max(node.data.length, pos + len));
        node.data.copy(grown);
        data.copy(grown, pos);
        node.data = grown;
      } else if (r < 0.58) {
        op = 'truncate';
        const id = pick(files);
        const node = model.nodes.get(id) as { kind: 'file'; data: Buffer; nlink: number };
        const size = rng.int(node.data.length * 2 + 5000);
        fsx.truncate(id, size);
        const next = Buffer.alloc(size);
        node.data.copy(next, 0, 0, Math.min(size, node.data.length));
        node.data = next;
      } else if (r < 0.66) {
        op = 'unlink';
        const victims = [...entries].filter(([, id]) => model.nodes.get(id)!.kind !== 'dir');
        if (victims.length === 0) continue;
        const [nm, id] = pick(victims);
        fsx.unlink(dirId, nm);
        entries.delete(nm);
        const node = model.nodes.get(id)!;
        if (node.kind === 'file' && --node.nlink > 0) continue;
        model.remove(id);
      } else if (r < 0.74) {
        op = 'rename';
        if (entries.size === 0) continue;
        const [nm, id] = pick([...entries]);
        const toDir = pick(dirs);
        const to = name();
        const isDir = model.nodes.get(id)!.kind === 'dir';
        // Skip moves the model would have to refuse (into itself, over non-empty dirs, type clashes).
        if (isDir) {
          let bad = false;
          const below = (d: number): void => {
            if (d === toDir) bad = true;
            for (const c of model.dir(d).values()) if (model.nodes.get(c)!.kind === 'dir') below(c);
          };
          below(id);
          if (bad) continue;
        }
        const target = model.dir(toDir).get(to);
        if (target !== undefined) {
          const tn = model.nodes.get(target)!;
          if (target === id) continue;
          if ((tn.kind === 'dir') !== isDir || (tn.kind === 'dir' && tn.entries.size > 0)) continue;
        }
        fsx.rename(dirId, nm, toDir, to);
        entries.delete(nm);
        if (target !== undefined) {
          const tn = model.nodes.get(target)!;
          if (tn.kind === 'file' && --tn.nlink > 0) { /* still linked elsewhere */ } else model.remove(target);
        }
        model.dir(toDir).set(to, id);
      } else if (r < 0.82) {
        op = 'mkdir';
        const nm = name();
        if (entries.has(nm) || dirs.length > 300) continue;
        const st = fsx.mkdir(dirId, nm, 0o755, 0, 0);
        model.set(st.ino, { kind: 'dir', entries: new Map() });
        entries.set(nm, st.ino);
      } else if (r < 0.88) {
        op = 'rmdir';
        const empties = [...entries].filter(([, id]) => {
          const n = model.nodes.get(id)!;
          return n.kind === 'dir' && n.entries.size === 0;
        });
        if (empties.length === 0) continue;
        const [nm, id] = pick(empties);
        fsx.rmdir(dirId, nm);
        entries.delete(nm);
        model.remove(id);
      } else if (r < 0.94) {
        op = 'link';
        const id = pick(files);
        const nm = name();
        if (entries.has(nm)) continue;
        fsx.link(id, dirId, nm);
        entries.set(nm, id);
        (model.nodes.get(id) as { nlink: number }).nlink++;
      } else if (r < 0.96) {
        op = rng.next() < 0.75 ? 'setxattr' : 'removexattr';
        const ids = [...model.nodes.keys()].filter((id) => id !== model.root);
        if (ids.length === 0) continue;
        const id = ids[rng.int(ids.length)]!;
        const x = model.xattrs.get(id) ?? new Map<string, Buffer>();
        const key = `user.a${rng.int(12)}${rng.next() < 0.1 ? 'y'.repeat(100) : ''}`;
        if (op === 'setxattr') {
          const value = crypto.randomBytes(rng.next() < 0.2 ? rng.int(9000) : rng.int(80));
          fsx.setxattr(id, key, value);
          x.set(key, value);
          model.xattrs.set(id, x);
        } else {
          const withAttrs = [...model.xattrs].filter(([, m]) => m.size > 0);
          if (withAttrs.length === 0) continue;
          const [victim, attrs] = withAttrs[rng.int(withAttrs.length)]!;
          const k = [...attrs.keys()][rng.int(attrs.size)]!;
          fsx.removexattr(victim, k);
          attrs.delete(k);
        }
      } else if (r < 0.995) {
        op = 'symlink';
        const nm = name();
        if (entries.has(nm)) continue;
        const target = `/some/where/${'t'.repeat(rng.int(rng.next() < 0.2 ? 1000 : 100))}`;
        const st = fsx.symlink(dirId, nm, target, 0, 0);
        model.set(st.ino, { kind: 'link', target });
        entries.set(nm, st.ino);
      } else {
        op = 'fsync';
        fsx.fsync();
        fsynced = model.clone();
      }
      counts[op] = (counts[op] ?? 0) + 1;
      if (process.env.RMAPFS_WORKLOAD_DEBUG !== undefined && step % Number(process.env.RMAPFS_WORKLOAD_DEBUG) === 0) {
        const c = check(fsx);
        const d = compare(fsx, model);
        if (c.length > 0 || d.length > 0) {
          t.fail(`after step ${step} (${op}): ${[...c, ...d].slice(0, 5).join(' | ')}`);
          break;
        }
      }
    } catch (e) {
      errors++;
      if (errors <= 5) t.fail(`step ${step} ${op}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  t.equal(errors, 0, `operations done: ${JSON.stringify(counts)}`);
  t.same(check(fsx), [], 'check is clean after the workload');
  t.same(compare(fsx, model), [], 'everything equals the model');
  fsx.fsync();
  fsynced = model.clone();
  fsx.close();
  fsx = Rmapfs.open(image);
  t.same(check(fsx), [], 'check is clean after reopen');
  t.same(compare(fsx, model), [], 'everything equals the model after reopen');
  // A crash after more work that was never fsynced: the journal brings back the last fsync.
  for (let i = 0; i < 200; i++) fsx.create(fsx.rootIno, `late${i}`, S_IFREG | 0o600, 0, 0);
  fsx.fs.abandon();
  fsx = Rmapfs.open(image);
  t.same(check(fsx), [], 'check is clean after a crash and journal replay');
  t.same(compare(fsx, fsynced), [], 'the filesystem is exactly as at the last fsync');
  fsx.close();
  t.end();
});

/**
 * fsstress's model of what one worker's directory tree must hold: entries,
 * file sizes and contents, symlink targets, extended attributes. Contents
 * are never stored: every write has a unique 32-bit key, and the byte at
 * file offset p written under key k is a function of (k, p) (`fillPattern`),
 * so a file is its size plus the sorted, disjoint list of written segments;
 * everything else below the size reads as zeros.
 */

/** A written range of a file: bytes [off, off + len) come from key. */
export interface Segment {
  off: number;
  len: number;
  key: number;
}

/** An xattr value: `len` bytes of the pattern of `key` (offset 0). */
export interface XattrValue {
  key: number;
  len: number;
}

export interface FileNode {
  kind: 'file';
  id: number;
  size: number;
  segs: Segment[];
  /** The names it has, as (directory, name). */
  links: { dir: DirNode; name: string }[];
  xattrs: Map<string, XattrValue>;
  /** An operation on it failed unexpectedly: its state is unknown, verify skips it. */
  tainted: boolean;
}

export interface SymlinkNode {
  kind: 'symlink';
  id: number;
  target: string;
  parent: DirNode;
  name: string;
}

export interface DirNode {
  kind: 'dir';
  id: number;
  /** null for the worker's top directory. */
  parent: DirNode | null;
  name: string;
  entries: Map<string, Node>;
  xattrs: Map<string, XattrValue>;
  tainted: boolean;
}

export type Node = FileNode | SymlinkNode | DirNode;

// ---- the content pattern ----

const PATLEN = 65521; // prime, so a key's shift and a file offset never line up by accident
let pattern: Buffer | null = null;

/** Twice the pattern, so any PATLEN-long window is one slice. Fixed (not seeded): the keys are. */
function patternBuffer(): Buffer {
  if (pattern === null) {
    pattern = Buffer.alloc(2 * PATLEN);
    let x = 0x9e3779b9;
    for (let i = 0; i < PATLEN; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      pattern[i] = x & 0xff;
    }
    pattern.copy(pattern, PATLEN, 0, PATLEN);
  }
  return pattern;
}

/** Fills dst[0, len) with the bytes key puts at file offsets [off, off + len). */
export function fillPattern(dst: Buffer, dstOff: number, key: number, off: number, len: number): void {
  const pat = patternBuffer();
  const xor = (key >>> 20) & 0xff;
  let shift = ((key % PATLEN) + (off % PATLEN)) % PATLEN;
  let done = 0;
  while (done < len) {
    const n = Math.min(len - done, PATLEN);
    pat.copy(dst, dstOff + done, shift, shift + n);
    done += n;
    shift = (shift + n) % PATLEN;
  }
  if (xor !== 0) for (let i = dstOff; i < dstOff + len; i++) dst[i]! ^= xor;
}

/** A fresh buffer of the bytes key puts at [off, off + len). */
export function patternBytes(key: number, off: number, len: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  fillPattern(b, 0, key, off, len);
  return b;
}

/** What a file must hold at [off, off + len) (len already clipped to its size). */
export function expectedContent(file: FileNode, off: number, len: number): Buffer {
  const out = Buffer.alloc(len);
  const end = off + len;
  for (const s of file.segs) {
    if (s.off >= end) break;
    const a = Math.max(s.off, off);
    const b = Math.min(s.off + s.len, end);
    if (a < b) fillPattern(out, a - off, s.key, a, b - a);
  }
  return out;
}

// ---- model updates ----

/** Segments cut to [0, size), or with [from, to) taken out. */
function cutSegments(segs: Segment[], from: number, to: number): Segment[] {
  const out: Segment[] = [];
  for (const s of segs) {
    const sEnd = s.off + s.len;
    if (sEnd <= from || s.off >= to) {
      out.push(s);
      continue;
    }
    if (s.off < from) out.push({ off: s.off, len: from - s.off, key: s.key });
    if (sEnd > to) out.push({ off: to, len: sEnd - to, key: s.key });
  }
  return out;
}

export function modelWrite(file: FileNode, off: number, len: number, key: number): void {
  if (len === 0) return;
  const segs = cutSegments(file.segs, off, off + len);
  let i = 0;
  while (i < segs.length && segs[i]!.off < off) i++;
  segs.splice(i, 0, { off, len, key });
  file.segs = segs;
  file.size = Math.max(file.size, off + len);
}

export function modelTruncate(file: FileNode, size: number): void {
  if (size < file.size) file.segs = cutSegments(file.segs, size, Infinity);
  file.size = size;
}

/** The path of a directory relative to the worker's top directory's parent. */
export function dirPath(d: DirNode): string {
  const parts: string[] = [];
  for (let x: DirNode | null = d; x !== null; x = x.parent) parts.push(x.name);
  return parts.reverse().join('/');
}

export function depth(d: DirNode): number {
  let n = 0;
  for (let x = d.parent; x !== null; x = x.parent) n++;
  return n;
}

/** Whether d is `ancestor` or lies below it. */
export function isWithin(d: DirNode, ancestor: DirNode): boolean {
  for (let x: DirNode | null = d; x !== null; x = x.parent) if (x === ancestor) return true;
  return false;
}

// ---- the manifest: the model as JSON, to verify in a later run ----

export interface SerialNode {
  id: number;
  kind: 'file' | 'symlink' | 'dir';
  size?: number;
  segs?: [number, number, number][];
  target?: string;
  xattrs?: [string, number, number][];
  entries?: [string, number][];
  tainted?: boolean;
}

export interface SerialModel {
  top: string;
  nodes: SerialNode[];
}

function xattrList(m: Map<string, XattrValue>): [string, number, number][] {
  return [...m].map(([k, v]) => [k, v.key, v.len]);
}

export function serialize(top: DirNode): SerialModel {
  const nodes: SerialNode[] = [];
  const seen = new Set<number>();
  const visit = (n: Node): void => {
    if (seen.has(n.id)) return;
    seen.add(n.id);
    if (n.kind === 'file') {
      nodes.push({ id: n.id, kind: 'file', size: n.size, segs: n.segs.map((s) => [s.off, s.len, s.key]),
        xattrs: xattrList(n.xattrs), tainted: n.tainted });
    } else if (n.kind === 'symlink') {
      nodes.push({ id: n.id, kind: 'symlink', target: n.target });
    } else {
      nodes.push({ id: n.id, kind: 'dir', xattrs: xattrList(n.xattrs), tainted: n.tainted,
        entries: [...n.entries].map(([name, c]) => [name, c.id]) });
      for (const c of n.entries.values()) visit(c);
    }
  };
  visit(top);
  return { top: top.name, nodes };
}

export function deserialize(m: SerialModel): DirNode {
  const byId = new Map<number, SerialNode>(m.nodes.map((n) => [n.id, n]));
  const built = new Map<number, Node>();
  const xattrs = (l: [string, number, number][] | undefined): Map<string, XattrValue> =>
    new Map((l ?? []).map(([k, key, len]) => [k, { key, len }]));
  const build = (id: number, parent: DirNode | null, name: string): Node => {
    const s = byId.get(id);
    if (s === undefined) throw new Error(`manifest: no node ${id}`);
    const old = built.get(id);
    if (old !== undefined) {
      if (old.kind !== 'file' || parent === null) throw new Error(`manifest: node ${id} has two names but is no file`);
      old.links.push({ dir: parent, name });
      return old;
    }
    if (s.kind === 'file') {
      const f: FileNode = { kind: 'file', id, size: s.size ?? 0, segs: (s.segs ?? []).map(([off, len, key]) => ({ off, len, key })),
        links: parent === null ? [] : [{ dir: parent, name }], xattrs: xattrs(s.xattrs), tainted: s.tainted ?? false };
      built.set(id, f);
      return f;
    }
    if (s.kind === 'symlink') {
      if (parent === null) throw new Error('manifest: a symlink at the top');
      const l: SymlinkNode = { kind: 'symlink', id, target: s.target ?? '', parent, name };
      built.set(id, l);
      return l;
    }
    const d: DirNode = { kind: 'dir', id, parent, name, entries: new Map(), xattrs: xattrs(s.xattrs), tainted: s.tainted ?? false };
    built.set(id, d);
    for (const [childName, childId] of s.entries ?? []) d.entries.set(childName, build(childId, d, childName));
    return d;
  };
  const top = build(m.nodes[0]?.id ?? 0, null, m.top);
  if (top.kind !== 'dir') throw new Error('manifest: the top is not a directory');
  return top;
}

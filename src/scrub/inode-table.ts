/**
 * The file pass's table of the inodes in use: for each, its mode as the pass
 * first read it and the directory entries that name it, looked up a million
 * times over a big filesystem.
 *
 * Keyed by a small integer (`inodeKeys`), and stored by inode chunk: a key's
 * chunk (key / 64) is looked up in a map with one entry per chunk -- small
 * enough to stay in the CPU caches, where a map with one entry per inode
 * does not -- and its slot is an index into typed arrays. Keys are listed in
 * the order they were added (the inode btrees' order).
 */
import { INODES_PER_CHUNK } from '../alloc/inode-btree';
import { INODES_PER_BLOCK } from '../format/geometry';
import type { Geometry } from '../format/geometry';

/** Keys up to 2^30 (a small integer V8 keeps unboxed) with room for every inode number an AG can hold. */
const SMALL_KEYS = 2 ** 30;

export interface InodeKeys {
  key: (ino: number) => number;
  inoOf: (key: number) => number;
}

/**
 * Inodes keyed by a small integer where the geometry allows -- AG number and
 * AG inode number packed below 2^30 -- not by the inode number: above 2^31
 * (every AG but the first) that is a heap number, boxed and hashed at each of
 * a million look-ups. A number no inode of the filesystem can have (a damaged
 * record's) keys as -(ino + 1), its own. Where they do not fit, the numbers
 * themselves.
 */
export function inodeKeys(geo: Pick<Geometry, 'agBlocks' | 'agCount' | 'inoAgno' | 'inoAgino' | 'ino'>): InodeKeys {
  const perAg = 2 ** Math.ceil(Math.log2(geo.agBlocks * INODES_PER_BLOCK));
  if (geo.agCount * perAg > SMALL_KEYS) return { key: (ino) => ino, inoOf: (k) => k };
  return {
    key: (ino) => {
      const agno = geo.inoAgno(ino);
      const agino = geo.inoAgino(ino);
      return agno < geo.agCount && agino < perAg ? agno * perAg + agino : -(ino + 1);
    },
    inoOf: (k) => (k < 0 ? -k - 1 : geo.ino(Math.floor(k / perAg), k % perAg)),
  };
}

/** A slot's mode word: this bit set means the inode is in use (its mode may be 0: it did not read). */
const IN_USE = 0x10000;

export class InodeTable {
  /** Chunk (key / 64) to its first slot. */
  private readonly slotOfChunk = new Map<number, number>();
  private modes = new Int32Array(INODES_PER_CHUNK * 64);
  private links = new Uint32Array(INODES_PER_CHUNK * 64);
  private slots = 0;
  /** The keys in use, in the order they were added. */
  readonly keys: number[] = [];

  private slotOf(key: number): number {
    const first = this.slotOfChunk.get(Math.floor(key / INODES_PER_CHUNK));
    return first === undefined ? -1 : first + (key - Math.floor(key / INODES_PER_CHUNK) * INODES_PER_CHUNK);
  }

  private newSlot(key: number): number {
    const chunk = Math.floor(key / INODES_PER_CHUNK);
    if (this.slots + INODES_PER_CHUNK > this.modes.length) {
      const modes = new Int32Array(this.modes.length * 2);
      modes.set(this.modes);
      this.modes = modes;
      const links = new Uint32Array(this.links.length * 2);
      links.set(this.links);
      this.links = links;
    }
    this.slotOfChunk.set(chunk, this.slots);
    this.slots += INODES_PER_CHUNK;
    return this.slotOf(key);
  }

  /** Inode `key` is in use, with this mode (0: it does not read). */
  setUsed(key: number, mode: number): void {
    let slot = this.slotOf(key);
    if (slot < 0) slot = this.newSlot(key);
    if ((this.modes[slot]! & IN_USE) === 0) this.keys.push(key);
    this.modes[slot] = IN_USE | (mode & 0xffff);
  }

  /** The mode of inode `key` if it is in use (0: it does not read), else undefined. */
  modeOf(key: number): number | undefined {
    const slot = this.slotOf(key);
    if (slot < 0) return undefined;
    const m = this.modes[slot]!;
    return (m & IN_USE) === 0 ? undefined : m & 0xffff;
  }

  /** One more directory entry names inode `key` (one in use). */
  link(key: number): void {
    const slot = this.slotOf(key);
    this.links[slot] = this.links[slot]! + 1;
  }

  /** The directory entries that name inode `key`. */
  linksOf(key: number): number {
    const slot = this.slotOf(key);
    return slot < 0 ? 0 : this.links[slot]!;
  }
}

/**
 * The floor peer of bench/io: bench/fuse-ll's trivial in-memory filesystem
 * (a Map of inodes, no journal, no btrees) served through our own binding
 * (src/fuse/lowlevel.ts) with the rmapfs daemon's timeouts and write size.
 * What a workload costs here is what the FUSE round trips alone cost: no
 * filesystem on this binding can be faster.
 *
 * Usage: node dist/bench/io/floor.js MNT   (prints "ready" once mounted;
 * SIGTERM, SIGINT or an unmount stops it)
 */
import * as os from 'os';
import { DirEntry, LowLevelFuse, LowLevelHandlers } from '../../src/fuse/lowlevel';
import { MemFs, lowLevelHandlers } from '../fuse-ll/main';

/** As the rmapfs daemon mounts (src/daemon/daemon.ts), with this filesystem's name. */
const DAEMON_LIKE_OPTIONS = ['big_writes', 'max_write=131072', 'default_permissions', 'fsname=rmapfs-bench-floor', 'subtype=floor'];
/** If the binding refuses the libfuse 2 write options (libfuse 3 has no big_writes). */
const PLAIN_OPTIONS = ['default_permissions', 'fsname=rmapfs-bench-floor', 'subtype=floor'];

const ENOTDIR = os.constants.errno.ENOTDIR;
const EBADF = os.constants.errno.EBADF;
const S_IFDIR = 0o040000;

/**
 * MemFs's readdir lists the whole directory on every call: quadratic in a
 * 30,000-name directory, which would put the floor above what the round
 * trips cost. Here each opendir takes one listing and readdir pages through it.
 */
function listOnce(f: MemFs, handlers: LowLevelHandlers): void {
  const listings = new Map<number, DirEntry[]>();
  let nextHandle = 1;
  handlers.opendir = (q, r) => {
    const node = f.nodes.get(q.ino);
    if (node === undefined || node.children === null) {
      r.error(ENOTDIR);
      return;
    }
    // Offsets: 1 after ".", 2 after "..", k+3 after the k-th child.
    const list: DirEntry[] = [{ name: '.', ino: q.ino, mode: S_IFDIR, off: 1 }, { name: '..', ino: 1, mode: S_IFDIR, off: 2 }];
    for (const [name, ino] of node.children) list.push({ name, ino, mode: f.nodes.get(ino)?.mode ?? 0, off: list.length + 1 });
    const fh = nextHandle++;
    listings.set(fh, list);
    r.open(fh);
  };
  handlers.readdir = (q, r) => {
    const list = listings.get(q.fh);
    if (list === undefined) r.error(EBADF);
    else r.entries(list, q.offset);
  };
  handlers.releasedir = (q, r) => {
    listings.delete(q.fh);
    r.ok();
  };
}

function mountFloor(mnt: string): LowLevelFuse {
  const f = new MemFs();
  const handlers = lowLevelHandlers(f);
  listOnce(f, handlers);
  let lastError: unknown = null;
  for (const options of [DAEMON_LIKE_OPTIONS, PLAIN_OPTIONS]) {
    const fuse = new LowLevelFuse({
      attrTimeout: 1, entryTimeout: 1,
      onError: (op, e) => process.stderr.write(`floor: op ${op} failed: ${e instanceof Error ? e.message : String(e)}\n`),
    });
    try {
      fuse.mount(mnt, options, handlers);
      return fuse;
    } catch (e) {
      lastError = e;
    }
  }
  throw lastError instanceof Error ? lastError : new Error(String(lastError));
}

function main(argv: string[]): void {
  const mnt = argv[0];
  if (mnt === undefined) {
    process.stderr.write('usage: floor.js MNT\n');
    process.exit(2);
  }
  const fuse = mountFloor(mnt);
  process.stdout.write('ready\n');
  fuse.done.then(() => process.exit(0), (e: unknown) => {
    process.stderr.write(`floor: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
  const stop = (): void => { void fuse.unmount(); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main(process.argv.slice(2));

/**
 * Offline repair: `rmapfs repair IMAGE` and `fsck.rmapfs`, on a filesystem
 * nobody has mounted. It runs the online repair itself (online.ts's
 * onlineRepair: the same scrub, the same table of repairers in the same
 * dependency order) over a filesystem opened here instead of by a daemon --
 * no FUSE, no control socket: nothing waits on the repair, so its slices
 * never stop early. Before that comes what only a whole, unmounted device
 * allows (the order matters: each needs the one before):
 *
 * 1. the primary superblock, when it does not verify, rebuilt from its copies
 *    (repair/primary-sb-repair.ts) -- and its root inode found again;
 * 2. a log whose superblock cannot be read is refused, or zeroed with -L
 *    (what it held is lost: said so);
 * 3. an AG header that cannot be read rebuilt from a scan of the AG's blocks
 *    (repair/ag-header-scan.ts);
 * 4. a root inode that does not verify (the mount refuses it, and with it
 *    everything): its identity restored as the online core repair restores
 *    any inode's (repair/inode-repair.ts); the rest is the table's.
 *
 * Then the table's repairs, then `rmapfs check` again: its verdict is the
 * result. Nothing is checked twice: the check before (when one runs) is the
 * repair's list, and the check after is its closing scrub. Exit statuses are fsck(8)'s (0 clean, 1 corrected, 4 left, 8
 * operational, 16 usage). -n is `rmapfs check` exactly; -p (preen) repairs
 * what the table's repairers rebuild from the filesystem's own redundancy and
 * leaves what needs a person (a superblock from a copy, an AG header from a
 * scan, a log) with status 4.
 */
import * as fsp from 'fs';
import * as path from 'path';
import createDebug from 'debug';
import { RmapfsError, isCorruption } from '../errors';
import { Filesystem } from '../fs/filesystem';
import { Rmapfs } from '../fs/rmapfs';
import { Device, DeviceTarget } from '../io/device';
import { listMounts } from '../io/mountinfo';
import { Journal } from '../log/journal';
import { BLOCK_SIZE, SB_MAGIC, STATE_CLEAN, SUPERBLOCK_FIELDS, decodeSuperblock } from '../format/superblock';
import { findField, writeField } from '../format/fields';
import { S_IFDIR } from '../inode/inode-format';
import { InodeStore } from '../inode/inode';
import { Directory } from '../dir/dir';
import { INODES_PER_CHUNK, decodeInobt, isInodeFree } from '../alloc/inode-btree';
import type { CtlEvent, CtlReply } from '../ctl/ctl';
import { primaryDisagreement, primaryGeometryWrong, rebuildPrimarySuperblock, superblockImageProblem } from '../repair/primary-sb-repair';
import type { PrimarySuperblockRebuild } from '../repair/primary-sb-repair';
import { rebuildAgHeaderFromScan } from '../repair/ag-header-scan';
import type { AgHeaderScanResult } from '../repair/ag-header-scan';
import { repairAgHeader, repairFreeList } from '../repair/ag-header-repair';
import { restoreInodeIdentity } from '../repair/inode-repair';
import type { StructureName } from '../format/structures';
import type { HeaderRepairResult } from '../repair/ag-header-repair';
import type { FileRepairResult } from '../repair/file-repair';
import { CHECK_CLEAN, CHECK_CORRUPT, CHECK_OPERATIONAL, checkDevice } from './check';
import type { DeviceCheckReport } from './check';
import type { RebuiltRmaps } from '../rmap/rmap-digest';
import { onlineRepair } from './online';
import type { OnlineFsckHooks } from './online';
import { isRepairable, selectStructures } from './table';
import { structureOfProblem } from '../scrub/health-marks';
import { isInodeStructure } from '../format/structures';
import type { CachedImage } from '../io/buf-cache';

const log = createDebug('rmapfs:fsck');

/** fsck(8)'s exit statuses (CHECK_* in check.ts are 0, 4 and 8 of them). */
export const FSCK_CLEAN = CHECK_CLEAN;
export const FSCK_CORRECTED = 1;
export const FSCK_UNCORRECTED = CHECK_CORRUPT;
export const FSCK_OPERATIONAL = CHECK_OPERATIONAL;
export const FSCK_USAGE = 16;

export interface OfflineRepairOptions {
  /** -n: check only, change nothing (`rmapfs check`). */
  dryRun?: boolean;
  /** -p/-a: repair only what needs no person; with a clean superblock and no -f, trust it. */
  preen?: boolean;
  /** -f: check (and repair) even a filesystem whose superblock says it is clean, in preen mode. */
  force?: boolean;
  /** -L: zero a log that cannot be replayed (what it held is lost). */
  zeroLog?: boolean;
  /** Rebuild every structure asked for that has a repairer, damaged or not (benches). */
  forceRebuild?: boolean;
  /** The structures to repair (null: every one). */
  types?: readonly string[] | null;
  /** The repair's progress (the online repair's events, and `phase` events of the whole-device steps). */
  onEvent?: (e: CtlEvent) => void;
  /**
   * Where the AGs whose rmap this repair rebuilds from the files are noted, with what each rebuild built,
   * for the check after (rmap-digest.ts; made here when not given -- tests pass one to look at it).
   */
  rebuiltRmaps?: RebuiltRmaps;
}

export interface OfflineRepairReport {
  path: string;
  /** An FSCK_* status. */
  status: number;
  /** Why it stopped or what it left, one line (null: nothing to say). */
  error: string | null;
  errorCode: string | null;
  /** What the whole-device steps did, a line each. */
  wholeDevice: string[];
  /** The table's header and free-list repairs that finished an AG header rebuilt from a scan. */
  headersAfterScan: HeaderRepairResult[];
  /** What may have been lost (-L), a line each. */
  warnings: string[];
  /** The table repair's reply (the online repair's own shape), or null when it did not run. */
  repair: CtlReply | null;
  /** The table repair run again, while each pass changed something and the check still found damage. */
  laterPasses: CtlReply[];
  /** The check before (when one ran apart from the repair's own scrub) and after. */
  before: DeviceCheckReport | null;
  after: DeviceCheckReport | null;
  seconds: number;
}

/** An error that ends the repair with its status and one line. */
class Stop extends Error {
  constructor(readonly status: number, readonly code: string, readonly line: string) {
    super(line);
  }
}

function stopFrom(e: unknown, status: number, prefix = ''): Stop {
  if (e instanceof Stop) return e;
  if (e instanceof RmapfsError) return new Stop(status, e.code, `${prefix}${e.message}`);
  throw e;
}

/** Refuses a path offline repair must not touch: missing, a directory, or mounted. */
function refuseUnusable(device: string): void {
  let st: fsp.Stats;
  try {
    st = fsp.statSync(device);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    throw new Stop(FSCK_OPERATIONAL, code, code === 'ENOENT' ? `${device}: no such file or device` : `cannot open ${device} (${code})`);
  }
  if (st.isDirectory()) {
    throw new Stop(FSCK_OPERATIONAL, 'EISDIR',
      `${device} is a directory: offline repair takes an image or a block device (rmapfs repair MOUNTPOINT repairs a mount online)`);
  }
  const real = fsp.realpathSync(device);
  const mount = listMounts().find((m) => m.source === real || m.source === path.resolve(device));
  if (mount !== undefined) {
    throw new Stop(FSCK_OPERATIONAL, 'EBUSY', `${device} is mounted on ${mount.mountpoint}; unmount it first, or repair it online (rmapfs repair ${mount.mountpoint})`);
  }
}

/** Runs fn on the device opened (read-only or not) with its exclusive lock held: EBUSY when a daemon holds it. */
function withDevice<T>(device: string, readOnly: boolean, fn: (d: Device) => T): T {
  const d = new Device(device, { readOnly });
  try {
    d.lock();
    return fn(d);
  } finally {
    d.close();
  }
}

/** Step 1: block 0, verified; rebuilt from the copies when it does not (null: it was good). */
function primarySuperblockStep(device: string, options: OfflineRepairOptions): string | null {
  return withDevice(device, options.dryRun === true || options.preen === true, (d) => {
    if (d.size < 2 * BLOCK_SIZE) throw new Stop(FSCK_OPERATIONAL, 'EINVAL', `${device} is not an rmapfs filesystem (${d.size} bytes)`);
    const b0 = Buffer.alloc(BLOCK_SIZE);
    d.read(0, b0, 0, BLOCK_SIZE);
    let problem = superblockImageProblem(b0, 0);
    if (problem === null) {
      // It verifies; its geometry may still not be the filesystem's (the AG headers say whose is).
      const wrong = primaryGeometryWrong(d);
      if (wrong.length === 0) return null;
      problem = `its ${wrong.join(', ')} differ from its copies', and the AG headers fit the copies' geometry`;
    }
    if (options.preen === true) {
      throw new Stop(FSCK_UNCORRECTED, 'EFSCORRUPTED', `the primary superblock is damaged (${problem}): run rmapfs repair (or fsck.rmapfs -y) by hand`);
    }
    let rebuilt;
    try {
      rebuilt = rebuildPrimarySuperblock(d);
    } catch (e) {
      // No copy either: something else (no magic) or an rmapfs beyond this repair.
      if (b0.readUInt32BE(0) !== SB_MAGIC) throw new Stop(FSCK_OPERATIONAL, 'EINVAL', `${device} is not an rmapfs filesystem (no superblock, and no copy of one)`);
      throw stopFrom(e, FSCK_UNCORRECTED);
    }
    return primaryRebuiltLine(problem, rebuilt);
  });
}

function primaryRebuiltLine(problem: string, rebuilt: PrimarySuperblockRebuild): string {
  const { agreeing, copies } = rebuilt;
  return `primary superblock (${problem}) rebuilt from the copy in AG ${agreeing.join(', ')} `
    + `(${agreeing.length} of ${copies} copies agree; found ${rebuilt.foundBy === 'scan' ? 'by a scan for the magic' : 'where the geometry puts them'})`;
}

/**
 * Step 1b: a primary superblock that verifies, yet whose log cannot be opened by it (a uuid or log
 * place that is not the filesystem's), rebuilt from its copies when they say otherwise on those
 * fields -- the log failing is what says the primary, not the copy, is wrong (with two AGs it is
 * one copy against the primary). Null: the log opens, or the copies agree with the primary (the
 * log step then refuses or zeroes the log).
 */
function primaryAgainstLogStep(device: string, options: OfflineRepairOptions): string | null {
  try {
    Filesystem.open(device, { readOnly: true, exclusive: true }).close();
    return null;
  } catch (e) {
    if (!isLogFailure(e)) return null;
    const differing = withDevice(device, true, (d) => primaryDisagreement(d));
    if (differing.length === 0) return null;
    const problem = `its ${differing.join(', ')} differ from its copies' and its log cannot be opened: ${e.message}`;
    if (options.preen === true) {
      throw new Stop(FSCK_UNCORRECTED, 'EFSCORRUPTED', `the primary superblock is damaged (${problem}): run rmapfs repair (or fsck.rmapfs -y) by hand`);
    }
    return withDevice(device, false, (d) => primaryRebuiltLine(problem, rebuildPrimarySuperblock(d)));
  }
}

/** The filesystem's log cannot be opened (its superblock or geometry): the open's own message says so. */
function isLogFailure(e: unknown): e is RmapfsError {
  return e instanceof RmapfsError && (e.code === 'EFSCORRUPTED' || e.code === 'EFSBADCRC') && /log superblock|bad log geometry/.test(e.message);
}

/** Step 2: a log that cannot be opened is refused, or (-L) formatted empty. */
function logStep(device: string, options: OfflineRepairOptions, warnings: string[]): string | null {
  try {
    Filesystem.open(device, { readOnly: true, exclusive: true }).close();
    return null;
  } catch (e) {
    if (!isLogFailure(e)) return null; // the next steps see (and say) anything else
    if (options.zeroLog !== true) {
      throw new Stop(FSCK_UNCORRECTED, e.code, `the log cannot be replayed (${e.message}); rmapfs repair -L zeroes it, `
        + 'losing the changes it holds');
    }
    withDevice(device, false, (d) => {
      const b0 = Buffer.alloc(BLOCK_SIZE);
      d.read(0, b0, 0, BLOCK_SIZE);
      const sb = decodeSuperblock(b0);
      Journal.format(new DeviceTarget(d), sb.logStart, sb.logBlocks, Buffer.from(b0.subarray(32, 48)));
    });
    warnings.push('the log was zeroed: changes committed in it but not yet written in place (the last seconds before the '
      + 'crash) are lost, and the filesystem may be inconsistent where they were; the repair that follows fixes what it can');
    return `log (${e.message}) zeroed`;
  }
}

/** The root directory: the first directory in use in AG 0 whose ".." is itself (mkfs makes it first). */
function findRootInode(fs: Filesystem): number | null {
  const inodes = new InodeStore(fs.cache, fs.geo, fs.alloc);
  let root: number | null = null;
  fs.alloc.ag(0).ino.forEach((b, off) => {
    if (root !== null) return;
    const rec = decodeInobt(b, off);
    for (let i = 0; i < INODES_PER_CHUNK && root === null; i++) {
      if (isInodeFree(rec, i)) continue;
      const ino = fs.geo.ino(0, rec.startino + i);
      try {
        const inode = inodes.handle(ino);
        if ((inode.mode & 0o170000) === S_IFDIR && new Directory(inode, fs.alloc, fs.geo).parent === ino) root = ino;
      } catch (e) {
        if (!(e instanceof RmapfsError)) throw e;
      }
    }
  });
  return root;
}

/**
 * Whether the primary superblock names the root directory: a directory in use that is its own
 * parent (a superblock that verifies may still name 0 or another inode: then it is found again).
 * True when the filesystem cannot be opened to tell (the next steps say why).
 */
function rootInodeNamed(device: string): boolean {
  let fs: Filesystem;
  try {
    fs = Filesystem.open(device, { readOnly: true, exclusive: true });
  } catch (e) {
    if (e instanceof RmapfsError) return true;
    throw e;
  }
  try {
    const named = fs.superblock().rootIno;
    if (named === 0) return false;
    try {
      const inode = new InodeStore(fs.cache, fs.geo, fs.alloc).handle(named);
      if ((inode.mode & 0o170000) === S_IFDIR && new Directory(inode, fs.alloc, fs.geo).parent === named) return true;
    } catch (e) {
      if (!(e instanceof RmapfsError)) throw e;
    }
    // Not the root, or unreadable: lost only if the root is found elsewhere (the root's own inode
    // block damaged is the inode repair's to say, not a superblock naming the wrong inode).
    const found = findRootInode(fs);
    return found === null || found === named;
  } catch (e) {
    if (e instanceof RmapfsError) return true;
    throw e;
  } finally {
    fs.close();
  }
}

/**
 * Step 3 (and the end of step 1): AG headers that cannot be read, rebuilt from scans; the root inode
 * named again. What it did, and the AGs whose header it rebuilt.
 */
function agHeaderStep(device: string, options: OfflineRepairOptions, rootLost: boolean): { lines: string[]; agnos: number[] } {
  let unreadable: number[];
  {
    const fs = Filesystem.open(device, { readOnly: true, exclusive: true });
    try {
      unreadable = fs.alloc.ags.filter((ag) => {
        try {
          ag.header();
          return false;
        } catch (e) {
          if (e instanceof RmapfsError && (e.code === 'EFSCORRUPTED' || e.code === 'EFSBADCRC')) return true;
          throw e;
        }
      }).map((ag) => ag.agno);
    } finally {
      fs.close();
    }
  }
  if (unreadable.length === 0 && !rootLost) return { lines: [], agnos: [] };
  if (options.preen === true) {
    throw new Stop(FSCK_UNCORRECTED, 'EFSCORRUPTED', `the header of AG ${unreadable.join(', ')} cannot be read: run rmapfs repair (or fsck.rmapfs -y) by hand`);
  }
  const lines: string[] = [];
  const fs = Filesystem.open(device);
  try {
    for (const agno of unreadable) {
      options.onEvent?.({ event: 'phase', text: `AG ${agno}: scanning its blocks for the btrees its header named` });
      lines.push(agHeaderLine(rebuildAgHeaderFromScan(fs, agno)));
    }
    if (rootLost) {
      const root = findRootInode(fs);
      if (root === null) throw new Stop(FSCK_UNCORRECTED, 'EFSCORRUPTED', 'the root directory was not found in AG 0 (no directory there is its own parent)');
      fs.run(() => {
        const sb = fs.cache.read(0, null);
        writeField(sb.data, 0, findField(SUPERBLOCK_FIELDS, 'rootIno', 'superblock'), root);
        fs.cache.markDirty(sb);
      });
      lines.push(`root directory found again: inode ${root}`);
    }
  } finally {
    fs.close();
  }
  return { lines, agnos: unreadable };
}

/**
 * Step 4: the root inode, when it does not verify, gets its identity back
 * (magic, version, number, UUID, fork format, crc), so the filesystem opens
 * for the table's repairs. Its one line, or null when it verified.
 */
function rootInodeStep(device: string): string | null {
  const rootDamage = (inodes: InodeStore, root: number): string | null => {
    try {
      return inodes.damage(inodes.handle(root))?.what ?? null;
    } catch (e) {
      if (!isCorruption(e)) throw e;
      return e instanceof Error ? e.message : String(e); // not one inode of its block at home
    }
  };
  // Looked at read-only first: a clean image is not written.
  let damage: string | null = null;
  {
    const fs = Filesystem.open(device, { readOnly: true, exclusive: true });
    try {
      const root = fs.superblock().rootIno;
      // No root to fix here (Rmapfs.open says so) when the superblock names none.
      if (root !== 0 && fs.geo.isValidIno(root)) damage = rootDamage(new InodeStore(fs.cache, fs.geo, fs.alloc), root);
    } finally {
      fs.close();
    }
  }
  if (damage === null) return null;
  const fs = Filesystem.open(device);
  try {
    const root = fs.superblock().rootIno;
    const inodes = new InodeStore(fs.cache, fs.geo, fs.alloc);
    const fixed = fs.run(() => restoreInodeIdentity(fs, inodes, root, new Set<StructureName>()));
    return `root inode ${root} (${damage}): ${fixed.join('; ')}`;
  } finally {
    fs.close();
  }
}

/**
 * A header rebuilt from a scan names its roots only: its counts are recomputed and its free list
 * (lost with it) rebuilt from the rmap at once, by the table's own repairers -- the check would
 * blame the free list's blocks on the rmap (owned by "ag", in no tree), whose rebuild needs the
 * header sound. A tree whose root was not found stays for the table's repair of it.
 */
async function finishScannedHeaders(device: string, agnos: readonly number[]): Promise<HeaderRepairResult[]> {
  const fsx = Rmapfs.open(device);
  const done: HeaderRepairResult[] = [];
  try {
    for (const agno of agnos) {
      try {
        done.push(repairAgHeader(fsx, agno));
        done.push(await repairFreeList(fsx, agno));
      } catch (e) {
        if (!(e instanceof RmapfsError)) throw e;
        log('AG %d: header rebuilt from a scan, left to the table repair: %s', agno, e.message);
      }
    }
  } finally {
    fsx.close();
  }
  return done;
}

function agHeaderLine(r: AgHeaderScanResult): string {
  const roots = r.roots.map((x) => (x.root === null ? `${x.tree} not found (rebuilt next)` : `${x.tree} ${x.root}${x.height > 1 ? ` (height ${x.height})` : ''}`));
  return `AG ${r.agno}: header rebuilt from a scan of its ${r.blocksScanned} blocks (roots: ${roots.join(', ')}; counts and free list rebuilt next)`;
}

function openForRepair(device: string): Rmapfs {
  try {
    return Rmapfs.open(device);
  } catch (e) {
    throw stopFrom(e, e instanceof RmapfsError && (e.code === 'EFSCORRUPTED' || e.code === 'EFSBADCRC') ? FSCK_UNCORRECTED : FSCK_OPERATIONAL,
      'cannot open the filesystem: ');
  }
}

function hooksOf(options: OfflineRepairOptions): OnlineFsckHooks {
  return { foregroundWaiting: null, abortReason: () => null, send: (e) => options.onEvent?.(e) };
}

/**
 * The online repair over a filesystem opened here: nothing waits on it, nothing stops it. Once it is
 * closed (every change written in place), `warm` holds the blocks its cache kept, for the check after.
 */
async function tableRepair(device: string, options: OfflineRepairOptions, before: DeviceCheckReport | null,
  rebuiltRmaps: RebuiltRmaps, warm: WarmBlocks): Promise<CtlReply> {
  const fsx = openForRepair(device);
  try {
    return await onlineRepair(fsx, selectStructures(options.types ?? null, null), null,
      // What the check before found is the repair's list (not scrubbed again); the check after is its closing scrub.
      {
        forceRebuild: options.forceRebuild === true, measureHeap: false, cancelled: () => false,
        offline: { found: before?.result.problems ?? null, inodesChecked: before?.result.inodesChecked, rebuiltRmaps },
      },
      hooksOf(options));
  } finally {
    fsx.close();
    warm.blocks = fsx.fs.cache.cleanBlocks();
  }
}

/**
 * What the last repair's cache held when it closed: the check after takes these blocks instead of
 * reading the device again (xfs_repair never re-reads what it wrote). They are exactly what the device
 * holds -- the close wrote every dirty block in place, and a block freed was dropped from the cache
 * -- and each is verified at its first read as if it came from the device.
 */
interface WarmBlocks {
  blocks: CachedImage[];
}

/** Per-inode forced rebuilds at most per pass (a check names at most a thousand problems anyway). */
const FORCED_INODES = 200;

/**
 * The file structures the check still finds damaged, each rebuilt for its inode (--force-rebuild
 * --inode): the check reads the device itself, the table repair's scrub a frozen view, which leaves
 * out-of-line attribute values unchecked (a live filesystem may have rewritten them since). Null when
 * the check names none.
 */
async function forcedFileRepairs(device: string, after: DeviceCheckReport, options: OfflineRepairOptions): Promise<CtlReply[] | null> {
  const wanted = new Map<string, { structure: StructureName; ino: number }>();
  for (const p of after.result.problems) {
    const structure = structureOfProblem(p);
    if (structure === null || !isInodeStructure(structure) || p.ino === undefined || !isRepairable(structure)) continue;
    if (wanted.size < FORCED_INODES) wanted.set(`${structure} ${p.ino}`, { structure, ino: p.ino });
  }
  if (wanted.size === 0) return null;
  const fsx = openForRepair(device);
  const replies: CtlReply[] = [];
  try {
    for (const { structure, ino } of wanted.values()) {
      log('inode %d: %s rebuilt as the check still finds it damaged', ino, structure);
      replies.push(await onlineRepair(fsx, [structure], null, { forceRebuild: true, measureHeap: false, cancelled: () => false, ino }, hooksOf(options)));
    }
  } finally {
    fsx.close();
  }
  return replies;
}

/** How many times at most the table repair runs (see repairDevice). */
const TABLE_PASSES = 3;

/** Whether the table repair rebuilt something: an AG structure, or a file's (an inode core, a block map, a directory ...). */
function rebuiltAnything(reply: CtlReply): boolean {
  // A file's repair that changed nothing (its sound core, looked at beside its damaged block map) is no correction.
  const files = Array.isArray(reply.files) ? reply.files as FileRepairResult[] : [];
  return ['ags', 'freeSpace', 'inodeBtree', 'headers'].some((k) => Array.isArray(reply[k]) && (reply[k] as unknown[]).length > 0)
    || files.some((f) => f.changes.length > 0);
}

/** Checks (-n) or repairs the filesystem on `device`; never throws for what it finds there. */
export async function repairDevice(device: string, options: OfflineRepairOptions = {}): Promise<OfflineRepairReport> {
  const started = process.hrtime.bigint();
  const report: OfflineRepairReport = {
    path: device, status: FSCK_CLEAN, error: null, errorCode: null, wholeDevice: [], headersAfterScan: [], warnings: [], repair: null, laterPasses: [], before: null, after: null, seconds: 0,
  };
  try {
    refuseUnusable(device);
    if (options.dryRun === true) {
      report.after = checkDevice(device);
      report.status = report.after.status;
      report.error = report.after.error;
      return report;
    }
    const sbLine = primarySuperblockStep(device, options) ?? primaryAgainstLogStep(device, options);
    if (sbLine !== null) report.wholeDevice.push(sbLine);
    const logLine = logStep(device, options, report.warnings);
    if (logLine !== null) report.wholeDevice.push(logLine);
    const scanned = agHeaderStep(device, options, sbLine !== null || !rootInodeNamed(device));
    report.wholeDevice.push(...scanned.lines);
    const rootLine = rootInodeStep(device);
    if (rootLine !== null) report.wholeDevice.push(rootLine);
    if (scanned.agnos.length > 0) report.headersAfterScan = await finishScannedHeaders(device, scanned.agnos);
    if (report.wholeDevice.length === 0 && options.forceRebuild !== true) {
      // Nothing the whole device needed: a clean filesystem is left as it is (not even opened for writing).
      if (options.preen === true && options.force !== true) {
        const trusted = withDevice(device, true, (d) => {
          const b0 = Buffer.alloc(BLOCK_SIZE);
          d.read(0, b0, 0, BLOCK_SIZE);
          return decodeSuperblock(b0).state === STATE_CLEAN;
        });
        if (trusted) return report;
      }
      options.onEvent?.({ event: 'phase', text: 'checking (rmapfs check)' });
      report.before = checkDevice(device);
      if (report.before.status !== FSCK_UNCORRECTED) {
        report.status = report.before.status;
        report.error = report.before.error;
        return report;
      }
    }
    // The check after need not compare the files with an rmap this repair rebuilt from them (rmap-digest.ts).
    const rebuiltRmaps: RebuiltRmaps = options.rebuiltRmaps ?? new Map();
    const warm: WarmBlocks = { blocks: [] };
    const checkAfter = (): DeviceCheckReport => {
      const after = checkDevice(device, { rebuiltRmaps, warmBlocks: warm.blocks });
      warm.blocks = [];
      return after;
    };
    report.repair = await tableRepair(device, options, report.before, rebuiltRmaps, warm);
    if (!report.repair.ok && !Array.isArray(report.repair.unrepairable)) {
      throw new Stop(FSCK_OPERATIONAL, String(report.repair.code ?? 'EIO'), String(report.repair.error));
    }
    if (report.repair.error !== undefined) report.error = String(report.repair.error);
    options.onEvent?.({ event: 'phase', text: 'checking the repaired filesystem (rmapfs check)' });
    report.after = checkAfter();
    // Heavy damage: a rebuild can leave work for a repair earlier in the order (a directory rebuilt after its
    // inode's block count was checked) or show damage that hid behind another (a file pass that could not
    // run). Run again while a pass changes something, as xfs_scrub retries its repairs.
    for (let last = report.repair, pass = 1; report.after.status === FSCK_UNCORRECTED && last.ok && rebuiltAnything(last)
      && pass < TABLE_PASSES; pass++) {
      options.onEvent?.({ event: 'phase', text: 'repairing again what the check still finds' });
      const forced = await forcedFileRepairs(device, report.after, options);
      if (forced !== null) {
        report.laterPasses.push(...forced.filter((r) => r.ok));
        last = forced.find((r) => rebuiltAnything(r)) ?? last;
        report.after = checkAfter();
        if (report.after.status !== FSCK_UNCORRECTED) break;
      }
      last = await tableRepair(device, options, report.after, rebuiltRmaps, warm);
      if (!last.ok) break;
      report.laterPasses.push(last);
      report.error = last.error !== undefined ? String(last.error) : null;
      report.after = checkAfter();
    }
    // fsck(8): damage the check before found and the check after no longer finds was corrected, whether or not
    // the rebuild that fixed it had a change to name (a directory rebuilt around a node read as a leaf loses nothing).
    const changed = report.wholeDevice.length > 0 || report.headersAfterScan.length > 0
      || report.before?.status === FSCK_UNCORRECTED || rebuiltAnything(report.repair);
    report.status = report.after.status === FSCK_CLEAN ? (changed ? FSCK_CORRECTED : FSCK_CLEAN) : report.after.status;
    if (report.after.error !== null) report.error = report.after.error;
  } catch (e) {
    // Damage nothing here could get past is left uncorrected; anything else stopped the repair itself.
    const stop = stopFrom(e, isCorruption(e) ? FSCK_UNCORRECTED : FSCK_OPERATIONAL);
    log('offline repair of %s stopped: %s', device, stop.line);
    report.status = stop.status;
    report.error = stop.line;
    report.errorCode = stop.code;
  } finally {
    report.seconds = Number(process.hrtime.bigint() - started) / 1e9;
  }
  return report;
}

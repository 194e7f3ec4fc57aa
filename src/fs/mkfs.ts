/**
 * mkfs: lays out a new rmapfs on a device or image file.
 *
 * Every AG gets a superblock (copy), its header, empty btree roots, a
 * stocked free list and one free extent for the rest; AG 0 also holds the
 * log. From the first block the rmap describes every used block, so the
 * coverage invariant holds before the filesystem is ever mounted.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import { BufCache } from '../io/buf-cache';
import { Device, DeviceTarget } from '../io/device';
import { stampMetaHeader } from '../io/meta-header';
import { Allocator } from '../alloc/alloc';
import {
  AGFL_SIZE, AGH_AGBNO, AGH_MAGIC, AG_BTREES, OFF_AGFL, OFF_AGFL_COUNT, OFF_AGNO, OFF_AG_BLOCKS, SB_AGBNO,
  SLOT_BLOCKS, SLOT_HEIGHT, SLOT_ROOT, agHeaderBufOps, slotOffset,
} from '../format/ag-header';
import { AG_FIXED_BLOCKS, Geometry, MKFS_AGFL_BLOCKS, firstFreeAgbno, planGeometry } from '../format/geometry';
import { OWN_AG, OWN_FS, OWN_INOBT, OWN_LOG } from '../format/owners';
import { SIGNATURE_SPAN, detectSignature } from '../format/signatures';
import {
  BLOCK_SIZE, FORMAT_VERSION, SB_MAGIC, STATE_CLEAN, encodeSuperblock, superblockBufOps,
} from '../format/superblock';
import type { Superblock } from '../format/superblock';
import { formatUuid } from '../format/fields';
import { rmapMap } from '../rmap/rmap';
import { Journal } from '../log/journal';
import { Filesystem } from './filesystem';
import { Rmapfs } from './rmapfs';

const log = createDebug('rmapfs:mkfs');

export interface MkfsOptions {
  /** Bytes; creates (or sizes an empty) image file. */
  size?: number;
  agCount?: number;
  /** Bytes per AG. */
  agSize?: number;
  logBlocks?: number;
  label?: string;
  /** Overwrite an existing filesystem. */
  force?: boolean;
  uuid?: Buffer;
}

export interface MkfsResult {
  geometry: Geometry;
  superblock: Superblock;
}

export function mkfs(path: string, options: MkfsOptions = {}): MkfsResult {
  prepareImage(path, options.size);
  const device = new Device(path);
  try {
    device.lock();
    if (options.label !== undefined && Buffer.byteLength(options.label) > 32) {
      throw new RmapfsError('EINVAL', `label '${options.label}' is longer than 32 bytes`);
    }
    const head = Buffer.alloc(Math.min(SIGNATURE_SPAN, device.size));
    device.read(0, head, 0, head.length);
    const found = detectSignature(head);
    if (found !== null && options.force !== true) {
      throw new RmapfsError('EEXIST', `${path} holds ${found === 'rmapfs' ? 'an rmapfs filesystem' : `a ${found} signature`}; use --force to overwrite it`);
    }
    const plan = planGeometry({
      totalBlocks: Math.floor(device.size / BLOCK_SIZE),
      agCount: options.agCount,
      agBlocks: options.agSize !== undefined ? Math.floor(options.agSize / BLOCK_SIZE) : undefined,
      logBlocks: options.logBlocks,
    });
    const geo = new Geometry({ ...plan, uuid: options.uuid ?? crypto.randomBytes(16) });
    const target = new DeviceTarget(device);
    const cache = new BufCache(target, { maxBlocks: 1 << 16 });
    const now = Math.floor(Date.now() / 1000);
    const sb: Superblock = {
      version: FORMAT_VERSION, features: 0, blockSize: BLOCK_SIZE, uuid: formatUuid(geo.uuid),
      totalBlocks: geo.totalBlocks, agBlocks: geo.agBlocks, agCount: geo.agCount, logStart: geo.logStart,
      logBlocks: geo.logBlocks, state: STATE_CLEAN, rootIno: 0, inodeSize: 512, inodesPerChunk: 64,
      createdSec: now, writtenSec: now, mountCount: 0, label: options.label ?? '',
    };
    for (let agno = 0; agno < geo.agCount; agno++) writeAgHeaders(cache, geo, agno, sb);
    const alloc = new Allocator(cache, geo);
    for (const ag of alloc.ags) {
      for (const name of AG_BTREES) {
        const tree = name === 'bno' ? ag.bno : name === 'cnt' ? ag.cnt : name === 'rmap' ? ag.rmap : ag.ino;
        cache.markDirty(tree.formatBlock(tree.storage.getRoot().ptr, 0));
      }
      const where = `AG ${ag.agno} rmap`;
      const map = (startblock: number, blockcount: number, owner: number): void =>
        rmapMap(ag.rmap, { startblock, blockcount, owner, offset: 0, flags: 0 }, where);
      map(SB_AGBNO, 2, OWN_FS);
      map(2, 3, OWN_AG); // bnobt, cntbt, rmapbt roots
      map(5, 1, OWN_INOBT);
      map(AG_FIXED_BLOCKS, MKFS_AGFL_BLOCKS, OWN_AG);
      let free = firstFreeAgbno(ag.agno);
      if (ag.agno === 0) {
        map(geo.logStart, geo.logBlocks, OWN_LOG);
        free = geo.logStart + geo.logBlocks;
      }
      ag.giveFree(free, ag.length - free);
    }
    cache.flush();
    Journal.format(target, geo.logStart, geo.logBlocks, geo.uuid);
    device.sync();
    device.close();
    // The root directory is made through the filesystem itself, as any directory is.
    const fsys = Filesystem.open(path);
    try {
      sb.rootIno = Rmapfs.makeRoot(fsys);
    } finally {
      fsys.close();
    }
    log('made %s: %d blocks in %d AGs of %d, log %d blocks', path, geo.totalBlocks, geo.agCount, geo.agBlocks, geo.logBlocks);
    return { geometry: geo, superblock: sb };
  } finally {
    device.close();
  }
}

/** Creates the image file when asked to (or sizes an empty one); refuses to guess otherwise. */
function prepareImage(path: string, size: number | undefined): void {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(path);
  } catch {
    st = undefined;
  }
  if (size !== undefined && (!Number.isSafeInteger(size) || size <= 0)) {
    throw new RmapfsError('EINVAL', `bad size ${size}`);
  }
  if (st === undefined) {
    if (size === undefined) throw new RmapfsError('ENOENT', `${path} does not exist (give --size to create an image file)`, { path });
    try {
      fs.writeFileSync(path, '', { flag: 'wx' });
      fs.truncateSync(path, size);
    } catch (e) {
      throw new RmapfsError((e as { code?: string }).code ?? 'EIO', `cannot create ${path}: ${(e as Error).message}`, { path });
    }
    return;
  }
  if (size !== undefined && st.isFile() && st.size !== size) {
    if (st.size !== 0) {
      throw new RmapfsError('EEXIST', `${path} exists with ${st.size} bytes; --size ${size} only sizes a new or empty image`, { path });
    }
    fs.truncateSync(path, size);
  }
}

function writeAgHeaders(cache: BufCache, geo: Geometry, agno: number, sb: Superblock): void {
  const start = geo.agStart(agno);
  const length = geo.agLength(agno);
  const sbBuf = cache.get(start + SB_AGBNO, superblockBufOps(geo.uuid));
  stampMetaHeader(sbBuf.data, SB_MAGIC, start + SB_AGBNO, geo.uuid, OWN_FS);
  encodeSuperblock(sb, sbBuf.data);
  cache.markDirty(sbBuf);

  const hdr = cache.get(start + AGH_AGBNO, agHeaderBufOps(geo.uuid, agno, length));
  const h = hdr.data;
  stampMetaHeader(h, AGH_MAGIC, start + AGH_AGBNO, geo.uuid, OWN_FS);
  h.writeUInt32BE(agno, OFF_AGNO);
  h.writeUInt32BE(length, OFF_AG_BLOCKS);
  AG_BTREES.forEach((name, i) => {
    h.writeUInt32BE(2 + i, slotOffset(name) + SLOT_ROOT);
    h.writeUInt32BE(1, slotOffset(name) + SLOT_HEIGHT);
    h.writeUInt32BE(1, slotOffset(name) + SLOT_BLOCKS);
  });
  if (MKFS_AGFL_BLOCKS > AGFL_SIZE) throw new Error('mkfs free list larger than the AGFL');
  for (let i = 0; i < MKFS_AGFL_BLOCKS; i++) h.writeUInt32BE(AG_FIXED_BLOCKS + i, OFF_AGFL + 4 * i);
  h.writeUInt32BE(MKFS_AGFL_BLOCKS, OFF_AGFL_COUNT);
  cache.markDirty(hdr);
}

/**
 * Test fixtures: btrees of any type on either target -- an xfile (the
 * in-memory btree) or a scratch image file opened as the device.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Btree } from '../../src/btree/btree';
import type { BtreeOps } from '../../src/btree/btree-ops';
import { MemBtree } from '../../src/btree/mem-btree';
import { RegionBtreeStorage } from '../../src/btree/region-storage';
import { BufCache } from '../../src/io/buf-cache';
import { Device, DeviceTarget } from '../../src/io/device';

export interface TreeFixture {
  tree: Btree;
  cache: BufCache;
  target: 'xfile' | 'device';
  /** Drops every cached block so the next reads come from the target. */
  dropCache(): void;
  close(): void;
}

export function scratchPath(name: string): string {
  return path.join(os.tmpdir(), `rmapfs-test-${process.pid}-${crypto.randomBytes(4).toString('hex')}-${name}`);
}

export function memTree(ops: BtreeOps, cacheBlocks = 4096): TreeFixture {
  const mem = new MemBtree(ops, { cacheBlocks });
  return {
    tree: mem.tree,
    cache: mem.cache,
    target: 'xfile',
    dropCache: () => { mem.cache.flush(); mem.cache.purgeClean(); },
    close: () => mem.close(),
  };
}

export function deviceTree(ops: BtreeOps, blocks: number, cacheBlocks = 4096): TreeFixture {
  const image = scratchPath('btree.img');
  fs.writeFileSync(image, '');
  fs.truncateSync(image, (blocks + 1) * 4096);
  const device = new Device(image);
  const target = new DeviceTarget(device);
  const cache = new BufCache(target, { maxBlocks: cacheBlocks, writeBackOnEvict: true });
  const storage = new RegionBtreeStorage(cache, crypto.randomBytes(16), 7, 1, blocks);
  const tree = Btree.create(ops, storage);
  return {
    tree,
    cache,
    target: 'device',
    dropCache: () => { cache.flush(); cache.purgeClean(); },
    close: () => { device.close(); fs.rmSync(image, { force: true }); },
  };
}


/**
 * The workloads of bench/io (issue 14), each on a fresh mount: the kernel's
 * caches dropped, then mounted, then unmounted after (the floor stays
 * mounted: see Peer.persistent). Each returns one figure: seconds, MiB/s
 * or IOPS. Later workloads use what earlier ones left (the tree, the 30,000
 * files, fio's file, the sequential file): `requires` names them, and the
 * runner runs a required one untimed when it was not asked for.
 */
import * as fs from 'fs';
import * as path from 'path';
import { must } from '../lib/procs';
import { Peer } from './peers';

export const WORKLOAD_KEYS = ['untar', 'ls', 'cat', 'touch', 'sqlite', 'rm', 'rand_write', 'rand_write_direct', 'seq_write', 'seq_read'] as const;
export type WorkloadKey = typeof WORKLOAD_KEYS[number];
export type Unit = 's' | 'MiB/s' | 'IOPS';

/** How much each workload does (--quick makes them small). */
export interface Scale {
  /** The directory whose tar is unpacked (its parent is the tar's -C). */
  treeSource: string;
  touchFiles: number;
  sqliteInserts: number;
  seqMib: number;
  fioMib: number;
  fioSeconds: number;
}

export interface Context {
  scale: Scale;
  /** The tar of scale.treeSource (on tmpfs, so reading it costs no disk). */
  tar: string;
  /** The tree's top directory name inside a mount (basename of treeSource). */
  treeName: string;
  /** scale.touchFiles names, one a line. */
  touchList: string;
  /** scale.sqliteInserts INSERT statements, one a line. */
  sqlScript: string;
  dropCaches(): Promise<void>;
  /** Called once a peer is mounted and just before it is unmounted (the daemon's CPU and memory). */
  mounted(peer: Peer): void;
  unmounting(peer: Peer): void;
  /** A figure besides the workload's own (the untar's unmount alone). */
  extra(peer: Peer, figure: string, value: number): void;
}

export interface Workload {
  key: WorkloadKey;
  /** The JSON key of its figure. */
  figure: string;
  label: string;
  unit: Unit;
  /** Run on the floor peer too (the metadata workloads). */
  onFloor: boolean;
  requires: readonly WorkloadKey[];
  run(peer: Peer, ctx: Context): Promise<number>;
}

function seconds(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/**
 * Drops the caches, mounts, runs body, unmounts (unless body did: the untar
 * times its own unmount through `umountNow`).
 */
async function onFreshMount<T>(peer: Peer, ctx: Context, body: (umountNow: () => Promise<void>) => Promise<T>): Promise<T> {
  await ctx.dropCaches();
  await peer.mount();
  ctx.mounted(peer);
  let unmounted = false;
  const umountNow = async (): Promise<void> => {
    ctx.unmounting(peer);
    unmounted = true;
    await peer.umount();
  };
  try {
    return await body(umountNow);
  } finally {
    if (!unmounted) await umountNow();
  }
}

function sh(script: string, ...args: string[]): Promise<unknown> {
  return must('sh', ['-c', script, 'sh', ...args], { timeoutMs: 60 * 60_000 });
}

function fioIops(stdout: string): number {
  const start = stdout.indexOf('{');
  if (start < 0) throw new Error('fio printed no JSON');
  const parsed = JSON.parse(stdout.slice(start)) as { jobs?: { write?: { iops?: number } }[] };
  const iops = parsed.jobs?.[0]?.write?.iops;
  if (typeof iops !== 'number') throw new Error('fio JSON has no jobs[0].write.iops');
  return Math.round(iops);
}

async function fioRandomWrites(peer: Peer, ctx: Context, direct: boolean): Promise<number> {
  const { fioMib, fioSeconds } = ctx.scale;
  return onFreshMount(peer, ctx, async () => {
    const r = await must('fio', ['--name=randwrite', '--ioengine=psync', '--iodepth=1', '--bs=4k', '--rw=randwrite',
      `--size=${fioMib}M`, `--runtime=${fioSeconds}`, '--time_based', `--direct=${direct ? 1 : 0}`,
      `--filename=${path.join(peer.mnt, 'fio')}`, '--output-format=json'], { timeoutMs: (fioSeconds + 600) * 1000 });
    return fioIops(r.stdout);
  });
}

export const WORKLOADS: readonly Workload[] = [
  {
    key: 'untar', figure: 'untar_umount_s', label: 'untar + unmount', unit: 's', onFloor: true, requires: [],
    run: (peer, ctx) => onFreshMount(peer, ctx, async (umountNow) => {
      const t0 = process.hrtime.bigint();
      await must('tar', ['-xf', ctx.tar, '-C', peer.mnt], { timeoutMs: 60 * 60_000 });
      const u0 = process.hrtime.bigint();
      await umountNow(); // the flush counts
      ctx.extra(peer, 'umount_after_untar_s', seconds(u0));
      return seconds(t0);
    }),
  },
  {
    key: 'ls', figure: 'ls_lr_s', label: 'ls -lR, cold', unit: 's', onFloor: true, requires: ['untar'],
    run: (peer, ctx) => onFreshMount(peer, ctx, async () => {
      const t0 = process.hrtime.bigint();
      await sh('ls -lR "$1" > /dev/null', path.join(peer.mnt, ctx.treeName));
      return seconds(t0);
    }),
  },
  {
    key: 'cat', figure: 'cat_all_s', label: 'cat every file, cold', unit: 's', onFloor: true, requires: ['untar'],
    run: (peer, ctx) => onFreshMount(peer, ctx, async () => {
      const t0 = process.hrtime.bigint();
      await sh('find "$1" -type f -print0 | xargs -0 cat > /dev/null', path.join(peer.mnt, ctx.treeName));
      return seconds(t0);
    }),
  },
  {
    key: 'touch', figure: 'touch_s', label: 'touch N in one dir', unit: 's', onFloor: true, requires: [],
    run: (peer, ctx) => onFreshMount(peer, ctx, async () => {
      const dir = path.join(peer.mnt, 'touch');
      fs.mkdirSync(dir);
      const t0 = process.hrtime.bigint();
      await sh('cd "$1" && xargs touch < "$2"', dir, ctx.touchList);
      return seconds(t0);
    }),
  },
  {
    key: 'sqlite', figure: 'sqlite_s', label: 'sqlite autocommit inserts', unit: 's', onFloor: true, requires: [],
    run: (peer, ctx) => onFreshMount(peer, ctx, async () => {
      const db = path.join(peer.mnt, 'bench.sqlite');
      fs.rmSync(db, { force: true });
      await must('sqlite3', [db, 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);']);
      const t0 = process.hrtime.bigint();
      await sh('sqlite3 "$1" < "$2"', db, ctx.sqlScript);
      const s = seconds(t0);
      const count = Number((await must('sqlite3', [db, 'SELECT count(*) FROM t;'])).stdout.trim());
      if (count !== ctx.scale.sqliteInserts) throw new Error(`sqlite: ${count} rows, not ${ctx.scale.sqliteInserts}`);
      return s;
    }),
  },
  {
    key: 'rm', figure: 'rm_rf_s', label: 'rm -rf tree + N files', unit: 's', onFloor: true, requires: ['untar', 'touch'],
    run: (peer, ctx) => onFreshMount(peer, ctx, async () => {
      const t0 = process.hrtime.bigint();
      await must('rm', ['-rf', path.join(peer.mnt, ctx.treeName), path.join(peer.mnt, 'touch')], { timeoutMs: 60 * 60_000 });
      return seconds(t0);
    }),
  },
  {
    key: 'rand_write', figure: 'rand_write_iops', label: 'fio 4 KiB randwrite buffered', unit: 'IOPS', onFloor: false, requires: [],
    run: (peer, ctx) => fioRandomWrites(peer, ctx, false),
  },
  {
    key: 'rand_write_direct', figure: 'rand_write_direct_iops', label: 'fio 4 KiB randwrite O_DIRECT', unit: 'IOPS', onFloor: false,
    requires: [],
    run: (peer, ctx) => fioRandomWrites(peer, ctx, true),
  },
  {
    key: 'seq_write', figure: 'seq_write_mibs', label: 'sequential write + fsync', unit: 'MiB/s', onFloor: false, requires: [],
    run: (peer, ctx) => onFreshMount(peer, ctx, async () => {
      const r = await must('dd', ['if=/dev/zero', `of=${path.join(peer.mnt, 'seq')}`, 'bs=1M', `count=${ctx.scale.seqMib}`, 'conv=fsync'],
        { timeoutMs: 60 * 60_000 });
      return ctx.scale.seqMib / r.seconds;
    }),
  },
  {
    key: 'seq_read', figure: 'seq_read_mibs', label: 'sequential read, cold', unit: 'MiB/s', onFloor: false, requires: ['seq_write'],
    run: (peer, ctx) => onFreshMount(peer, ctx, async () => {
      const file = path.join(peer.mnt, 'seq');
      const size = fs.statSync(file).size;
      if (size !== ctx.scale.seqMib * 1024 * 1024) throw new Error(`${file} is ${size} bytes after remount`);
      const r = await must('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M'], { timeoutMs: 60 * 60_000 });
      return ctx.scale.seqMib / r.seconds;
    }),
  },
];

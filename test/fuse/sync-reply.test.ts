/**
 * `-o sync` / `-o dirsync`: a change is durable before its reply (issue 11
 * item 6). The FUSE handlers (LowLevelOps, as the daemon runs them) serve a
 * workload over a real filesystem whose device writes go to a write log;
 * every reply places a mark in the log at the moment it is sent. Rebuilt at
 * the last flush before each reply -- what a crash right after the reply
 * leaves -- the filesystem must hold every change replied to so far. With
 * sync, a failing log force is the request's error (EIO), never a success.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as crypto from 'crypto';
import * as fs from 'fs';
import { DEFAULT_ATIME_POLICY, Rmapfs } from '../../src/fs/rmapfs';
import { LowLevelOps } from '../../src/fuse/ll-ops';
import type { Attr, Caller, DirEntry as FuseDirEntry, Entry, LowLevelHandlers, Statfs } from '../../src/fuse/lowlevel';
import { FaultInjector } from '../../src/io/fault-injector';
import { WriteLogReader, WriteLogRecorder, WLOG_FLUSH, WLOG_MARK, WLOG_WRITE } from '../../src/io/write-log';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../../src/inode/inode-format';
import { scratchImage } from '../lib/fs';
import { scratchPath } from '../lib/trees';
import { Rng, testSeed } from '../lib/rng';

const ROOT_NODE = 1;
const caller: Caller = { uid: 0, gid: 0, pid: 1, umask: 0o022 };

/** One reply object for any request: what it was answered, and a mark in the write log when it succeeded. */
class RecordingReply {
  answered = false;
  errno = 0;
  entryIno = 0;
  count = 0;
  constructor(private readonly onSuccess: () => void) {}
  private answer(): void {
    if (this.answered) throw new Error('answered twice');
    this.answered = true;
    this.onSuccess();
  }
  error(errno: number): void {
    if (this.answered) throw new Error('answered twice');
    this.answered = true;
    this.errno = errno;
  }
  ok(): void { this.answer(); }
  entry(e: Entry): void { this.entryIno = e.ino; this.answer(); }
  negative(): void { this.answer(); }
  attr(_a: Attr): void { this.answer(); }
  readlink(_target: string): void { this.answer(); }
  open(_fh: number): void { this.answer(); }
  create(e: Entry, _fh: number): void { this.entryIno = e.ino; this.answer(); }
  data(_buf: Uint8Array): void { this.answer(); }
  written(count: number): void { this.count = count; this.answer(); }
  entries(list: readonly FuseDirEntry[]): number { this.answer(); return list.length; }
  statfs(_s: Statfs): void { this.answer(); }
  value(_v: Uint8Array): void { this.answer(); }
  names(_list: readonly string[]): void { this.answer(); }
}

/** The tree as text, path by path: type, mode, size, content hash, link target, xattrs (names only: whole namespace when `namesOnly`). */
function snapshot(fsx: Rmapfs, namesOnly: boolean): string {
  const lines: string[] = [];
  const walk = (dirIno: number, at: string): void => {
    for (const e of fsx.readdir(dirIno)) {
      if (e.name === '.' || e.name === '..') continue;
      const p = `${at}/${e.name}`;
      const st = fsx.stat(e.ino);
      const type = st.mode & S_IFMT;
      if (namesOnly) {
        lines.push(`${p} ${type === S_IFDIR ? 'dir' : type === S_IFLNK ? 'link' : 'file'}`);
      } else {
        let what = `mode ${(st.mode & 0o7777).toString(8)} nlink ${st.nlink}`;
        if (type === S_IFREG) {
          what += ` size ${st.size} sha ${crypto.createHash('sha1').update(fsx.read(e.ino, 0, st.size)).digest('hex').slice(0, 12)}`;
        } else if (type === S_IFLNK) {
          what += ` -> ${fsx.readlink(e.ino).toString()}`;
        }
        const xattrs = fsx.listxattr(e.ino).sort().map((n) => `${n}=${fsx.getxattr(e.ino, n).toString('hex')}`);
        lines.push(`${p} ${what}${xattrs.length > 0 ? ` xattrs ${xattrs.join(',')}` : ''}`);
      }
      if (type === S_IFDIR) walk(e.ino, p);
    }
  };
  walk(fsx.rootIno, '');
  return lines.sort().join('\n');
}

interface Served {
  /** The tree as the workload saw it after each reply: expected[N] belongs to mark "reply N". */
  expected: string[];
  /** Which replies came from namespace requests. */
  namespaceReply: boolean[];
}

/**
 * Runs a random workload of modifying requests through the handlers; every
 * reply marks the log "reply N" and the tree as it then was is kept.
 */
function serve(h: LowLevelHandlers, fsx: Rmapfs, recorder: WriteLogRecorder, seed: number, namesOnly: boolean): Served {
  const rng = new Rng(seed);
  const served: Served = { expected: [snapshot(fsx, namesOnly)], namespaceReply: [true] };
  recorder.mark('reply 0');
  const files: { ino: number; name: string; dir: number }[] = [];
  const dirs: number[] = [ROOT_NODE];
  let serial = 0;
  const send = (namespace: boolean, call: (reply: RecordingReply) => void): RecordingReply => {
    const reply = new RecordingReply(() => {
      served.expected.push(snapshot(fsx, namesOnly));
      served.namespaceReply.push(namespace);
      recorder.mark(`reply ${served.expected.length - 1}`);
    });
    call(reply);
    return reply;
  };
  for (let op = 0; op < 60; op++) {
    const pick = rng.int(10);
    const file = files.length > 0 ? files[rng.int(files.length)]! : null;
    const dir = dirs[rng.int(dirs.length)]!;
    if (file === null || pick === 0) {
      const name = `f${serial++}`;
      const r = send(true, (reply) => h.create!({ parent: dir, name, mode: S_IFREG | 0o644, flags: 0, caller }, reply));
      if (r.errno === 0) files.push({ ino: r.entryIno, name, dir });
    } else if (pick <= 3) {
      const data = crypto.randomBytes(1 + rng.int(20000));
      send(false, (reply) => h.write!({ ino: file.ino, fh: file.ino, offset: rng.int(60000), data, caller, killSuidgid: false, fromCache: false }, reply));
    } else if (pick === 4) {
      const name = `d${serial++}`;
      const r = send(true, (reply) => h.mkdir!({ parent: dir, name, mode: 0o755, caller }, reply));
      if (r.errno === 0) dirs.push(r.entryIno);
    } else if (pick === 5) {
      const name = `r${serial++}`;
      const r = send(true, (reply) => h.rename!({ parent: file.dir, name: file.name, newParent: dir, newName: name, flags: 0, caller }, reply));
      if (r.errno === 0) Object.assign(file, { name, dir });
    } else if (pick === 6) {
      send(false, (reply) => h.setattr!({ ino: file.ino, fh: null, size: rng.int(30000), mode: 0o600 + rng.int(0o100), caller, killSuidgid: false }, reply));
    } else if (pick === 7) {
      const name = `user.a${rng.int(3)}`;
      if (rng.int(2) === 0) send(false, (reply) => h.setxattr!({ ino: file.ino, name, value: crypto.randomBytes(1 + rng.int(100)), flags: 0, caller }, reply));
      else send(false, (reply) => h.removexattr!({ ino: file.ino, name, caller }, reply));
    } else if (pick === 8) {
      if (rng.int(2) === 0) send(true, (reply) => h.link!({ ino: file.ino, newParent: dir, newName: `l${serial++}`, caller }, reply));
      else send(true, (reply) => h.symlink!({ parent: dir, name: `s${serial++}`, target: `target-${serial}`, caller }, reply));
    } else {
      if (rng.int(2) === 0) {
        send(false, (reply) => h.fallocate!({ ino: file.ino, fh: file.ino, mode: 0, offset: rng.int(40000), length: 1 + rng.int(40000), caller }, reply));
      } else {
        const r = send(true, (reply) => h.unlink!({ parent: file.dir, name: file.name, caller }, reply));
        if (r.errno === 0) files.splice(files.indexOf(file), 1);
      }
    }
  }
  return served;
}

/**
 * Rebuilds the device from `base` along the log and, at each reply mark,
 * opens the state at the last flush before it (journal replayed, read-only)
 * and compares it with what the workload was told. Returns the mismatches.
 */
function verifyAtReplies(base: string, logPath: string, served: Served, namesOnly: boolean, onlyNamespace: boolean): string[] {
  const work = scratchPath('work.img');
  const durable = scratchPath('durable.img');
  fs.copyFileSync(base, work);
  fs.copyFileSync(base, durable);
  const problems: string[] = [];
  const reader = new WriteLogReader(logPath);
  const fd = fs.openSync(work, 'r+');
  let durableIsCurrent = true; // durable.img = work.img as of the last flush
  let compared = 0;
  try {
    for (let e = reader.next(); e !== null; e = reader.next()) {
      if (e.kind === WLOG_WRITE) {
        fs.writeSync(fd, e.data, 0, e.data.length, e.pos);
        durableIsCurrent = false;
      } else if (e.kind === WLOG_FLUSH) {
        if (!durableIsCurrent) fs.copyFileSync(work, durable);
        durableIsCurrent = true;
      } else if (e.kind === WLOG_MARK) {
        const m = /^reply (\d+)$/.exec(e.label);
        if (m === null) continue;
        const n = Number(m[1]);
        if (onlyNamespace && !served.namespaceReply[n]) continue;
        const fsx = Rmapfs.open(durable, { readOnly: true });
        let got: string;
        try {
          got = snapshot(fsx, namesOnly);
        } finally {
          fsx.close();
        }
        compared++;
        if (got !== served.expected[n]) problems.push(`reply ${n}: a crash right after it loses what was replied to`);
      }
    }
  } finally {
    fs.closeSync(fd);
    reader.close();
    fs.rmSync(work, { force: true });
    fs.rmSync(durable, { force: true });
  }
  if (compared < 10) problems.push(`only ${compared} replies compared`);
  return problems;
}

function mountInProcess(t: Test, options: { sync: boolean; dirsync: boolean }): { h: LowLevelHandlers; fsx: Rmapfs; recorder: WriteLogRecorder; base: string; logPath: string } {
  const image = scratchImage(t, { size: 16 << 20 });
  const base = scratchPath('base.img');
  const logPath = scratchPath('write.log');
  fs.copyFileSync(image, base);
  t.teardown(() => { fs.rmSync(base, { force: true }); fs.rmSync(logPath, { force: true }); });
  const recorder = new WriteLogRecorder(logPath, fs.statSync(image).size);
  const fsx = Rmapfs.open(image, { interposers: [recorder] });
  const h = new LowLevelOps(fsx, { readOnly: false, uid: null, gid: null, atime: DEFAULT_ATIME_POLICY, ...options }).handlers();
  return { h, fsx, recorder, base, logPath };
}

t.test('-o sync: at every reply, a crash keeps everything replied to', (t) => {
  const seed = testSeed(1106);
  t.comment(`seed ${seed} (replay with RMAPFS_SEED=${seed})`);
  const { h, fsx, recorder, base, logPath } = mountInProcess(t, { sync: true, dirsync: false });
  const served = serve(h, fsx, recorder, seed, false);
  fsx.close();
  recorder.close();
  t.same(verifyAtReplies(base, logPath, served, false, false), [], `all ${served.expected.length - 1} replies durable when sent`);
  t.end();
});

t.test('-o dirsync: at every namespace reply, a crash keeps every name replied to', (t) => {
  const seed = testSeed(1106);
  t.comment(`seed ${seed} (replay with RMAPFS_SEED=${seed})`);
  const { h, fsx, recorder, base, logPath } = mountInProcess(t, { sync: false, dirsync: true });
  const served = serve(h, fsx, recorder, seed, true);
  fsx.close();
  recorder.close();
  t.same(verifyAtReplies(base, logPath, served, true, true), [], 'every namespace reply durable when sent');
  t.end();
});

t.test('-o sync: a failing log force is the request\'s error, not a success', (t) => {
  const image = scratchImage(t, { size: 16 << 20 });
  const faults = new FaultInjector();
  const fsx = Rmapfs.open(image, { interposers: [faults] });
  t.teardown(() => fsx.close());
  const h = new LowLevelOps(fsx, { readOnly: false, uid: null, gid: null, sync: true, dirsync: false, atime: DEFAULT_ATIME_POLICY }).handlers();
  const created = new RecordingReply(() => undefined);
  h.create!({ parent: ROOT_NODE, name: 'f', mode: S_IFREG | 0o644, flags: 0, caller }, created);
  t.equal(created.errno, 0, 'create replied');
  faults.set('sync@1');
  const written = new RecordingReply(() => undefined);
  h.write!({ ino: created.entryIno, fh: created.entryIno, offset: 0, data: Buffer.alloc(5000, 7), caller, killSuidgid: false, fromCache: false }, written);
  t.equal(written.errno, 5, 'the write whose force failed is answered EIO');
  t.not(fsx.fs.shutdownWhy, null, 'and the filesystem is shut down');
  const next = new RecordingReply(() => undefined);
  h.mkdir!({ parent: ROOT_NODE, name: 'd', mode: 0o755, caller }, next);
  t.equal(next.errno, 5, 'later changes are EIO too');
  t.end();
});

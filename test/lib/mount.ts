/**
 * A real rmapfs mount for tap tests: a scratch image mounted by this checkout's
 * `rmapfs mount` (a daemon process of its own: never serve a mount from the
 * test's process, which then uses it), unmounted at teardown whatever happened.
 * Also C helpers compiled at test time (cc) into the mount's directory.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync, spawnSync } from 'child_process';
import type { Test } from 'tap';

/** This checkout: the first directory above this file with a package.json (from test/lib or dist/test/lib). */
function checkoutRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}

/** This checkout's `rmapfs`. */
export const RMAPFS = path.join(checkoutRoot(), 'bin', 'rmapfs');

/** Mounting needs root and /dev/fuse. */
export const canMount = fs.existsSync('/dev/fuse') && process.getuid?.() === 0;

export class ScratchMount {
  readonly dir: string;
  readonly image: string;
  readonly mnt: string;
  private options: string;

  constructor(t: Test, options = '', sizeMiB = 64) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rmapfs-mount-test-'));
    this.image = path.join(this.dir, 'fs.img');
    this.mnt = path.join(this.dir, 'mnt');
    this.options = options;
    fs.mkdirSync(this.mnt);
    t.teardown(() => {
      if (this.mounted()) {
        if (spawnSync(RMAPFS, ['umount', this.mnt]).status !== 0) spawnSync('umount', ['-l', this.mnt]);
      }
      fs.rmSync(this.dir, { recursive: true, force: true });
    });
    execFileSync(RMAPFS, ['mkfs', '--size', `${sizeMiB}M`, this.image], { stdio: 'ignore' });
    this.mount();
  }

  mounted(): boolean {
    return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === this.mnt);
  }

  /** Mounts again (with other options, if given). */
  mount(options = this.options): void {
    this.options = options;
    execFileSync(RMAPFS, ['mount', ...(options === '' ? [] : ['-o', options]), this.image, this.mnt], { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  unmount(): void {
    execFileSync(RMAPFS, ['umount', this.mnt], { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  /** Unmounts and mounts again: the kernel's dentries and inodes of the mount are gone. */
  cycle(): void {
    this.unmount();
    this.mount();
  }

  path(...names: string[]): string {
    return path.join(this.mnt, ...names);
  }

  /** `rmapfs status --json` of the mount. */
  status(): Record<string, unknown> {
    return JSON.parse(execFileSync(RMAPFS, ['status', '--json', this.mnt], { encoding: 'utf8' })) as Record<string, unknown>;
  }

  /** test/lib/NAME.c compiled with cc into this mount's scratch directory; returns the program. */
  compile(name: string): string {
    const source = path.join(checkoutRoot(), 'test', 'lib', `${name}.c`);
    const program = path.join(this.dir, name);
    execFileSync('cc', ['-O1', '-Wall', '-Werror', '-o', program, source]);
    return program;
  }
}

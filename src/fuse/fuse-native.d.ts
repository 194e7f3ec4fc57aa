/**
 * The parts of fuse-native (2.2.6, no bundled types) that rmapfs uses.
 * Callbacks take a negative errno (or 0) first, as fuse-native expects.
 */
declare module 'fuse-native' {
  type Cb = (code: number, ...result: unknown[]) => void;
  interface FuseOptions {
    timeout?: number | false;
    force?: boolean;
    mkdir?: boolean;
    debug?: boolean;
    allowOther?: boolean;
    defaultPermissions?: boolean;
    fsname?: string;
    subtype?: string;
    uid?: number;
    gid?: number;
    entryTimeout?: number;
    attrTimeout?: number;
  }
  type FuseOps = Record<string, (...args: never[]) => void>;
  class Fuse {
    constructor(mnt: string, ops: FuseOps, opts?: FuseOptions);
    mnt: string;
    opts: FuseOptions;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    _fuseOptions(): string;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
    static isConfigured(cb: (err: Error | null, configured: boolean) => void): void;
  }
  export = Fuse;
}

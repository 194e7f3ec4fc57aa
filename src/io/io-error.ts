/**
 * The one place where errors from the addon become RmapfsErrors: errno code
 * kept, message a single line naming what failed and where.
 */
import { isNativeError } from '../native';
import { RmapfsError } from '../errors';

/** Turns an addon error into an RmapfsError with the errno and a one-line message. */
export function wrapIoError(e: unknown, what: string): RmapfsError {
  if (e instanceof RmapfsError) return e;
  if (isNativeError(e)) {
    const where = e.path !== undefined && !what.includes(e.path) ? ` (${e.path})` : '';
    return new RmapfsError(e.code, `${what}${where}: ${describeErrno(e.code)}`, { path: e.path, cause: e });
  }
  return new RmapfsError('EIO', `${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}

const errnoText: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EBUSY: 'device or resource busy (mounted or in use)',
  EIO: 'input/output error',
  ENOSPC: 'no space left on device',
  ENOMEM: 'out of memory',
  EISDIR: 'is a directory',
  ENOTDIR: 'not a directory',
  EINVAL: 'invalid argument',
  EROFS: 'read-only file system',
  EBADF: 'bad file descriptor',
  ENXIO: 'no such device or address',
  EFBIG: 'file too large',
};

export function describeErrno(code: string): string {
  return errnoText[code] ?? code;
}

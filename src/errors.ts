/**
 * Errors that reach a user. Every failure the filesystem reports carries an
 * errno (so the FUSE layer can answer with it and the CLI can exit with a
 * clear one-line message) -- never a bare stack trace.
 */
import * as os from 'os';

const errnoNumbers = os.constants.errno as Record<string, number>;

export class RmapfsError extends Error {
  /** Symbolic errno, e.g. "ENOENT", "EIO", "EFSCORRUPTED". */
  readonly code: string;
  /** Positive errno number (EFSCORRUPTED is EUCLEAN, as in XFS). */
  readonly errno: number;
  readonly path?: string;

  constructor(code: string, message: string, options?: { path?: string; cause?: unknown }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'RmapfsError';
    this.code = code;
    this.errno = errnoOf(code);
    if (options?.path !== undefined) this.path = options.path;
  }

  /** The one line a user sees: "rmapfs: <message>". */
  toLine(): string {
    return `rmapfs: ${this.message}`;
  }
}

/** EFSCORRUPTED/EFSBADCRC are XFS's names for EUCLEAN/EBADMSG; we keep them. */
export function errnoOf(code: string): number {
  if (code === 'EFSCORRUPTED') return errnoNumbers.EUCLEAN ?? 117;
  if (code === 'EFSBADCRC') return errnoNumbers.EBADMSG ?? 74;
  return errnoNumbers[code] ?? errnoNumbers.EIO ?? 5;
}

/** A failure that says metadata is damaged (EUCLEAN / EBADMSG), as opposed to ENOSPC, EIO... */
export function isCorruption(e: unknown): e is RmapfsError {
  return e instanceof RmapfsError && (e.code === 'EFSCORRUPTED' || e.code === 'EFSBADCRC');
}

/** Metadata failed its checks: the block is corruption, never data. */
export function corruption(message: string): RmapfsError {
  return new RmapfsError('EFSCORRUPTED', message);
}

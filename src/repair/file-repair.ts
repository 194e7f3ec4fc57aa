/**
 * What every file-level repairer (inode core, block map, directory,
 * attributes, symlink, link counts) shares: the shape of what it reports,
 * one object at a time, so that `rmapfs repair` -- online and offline --
 * prints one line per object a person can act on ("/home/a/b: 3 names lost
 * (blocks 1234-1236 did not verify)", "inode 5321 moved to
 * /lost+found/5321").
 *
 * A file repairer rebuilds one structure of one inode atomically: the old one
 * stays in use until one transaction installs the new one (and the old
 * blocks are reaped after it), as the AG repairers do.
 */
import type { StructureName } from '../format/structures';
import type { PacedRepairOptions } from './paced-repair';

export interface FileRepairResult {
  /** The structure rebuilt (a file-scope name of format/structures.ts). */
  type: StructureName;
  ino: number;
  /** A path that reaches the inode, when one was found; null for an unlinked or unreachable one. */
  path: string | null;
  /**
   * What the repair changed or could not save, one line each, without the
   * object's name (the report puts path or inode number in front): "3 names
   * lost (blocks 1234-1236 did not verify)", "block count 12 -> 9".
   * Empty when the rebuild found nothing to change.
   */
  changes: string[];
  /** The one transaction that installed the new structure, in ms (0 when nothing was installed). */
  commitPauseMs: number;
  /**
   * Other structures of the same inode this repair found beyond saving and
   * left for their own repairers (the inode core's repair empties a data
   * fork its type cannot have: the block map is then rebuilt from the rmap).
   */
  leftFor?: StructureName[];
  /** The repair of this object failed (the old structure stays): why, one line. The others go on. */
  error?: string;
  /**
   * The object had no name before the repair (an inode adopted into
   * /lost+found): it is reported by its inode number, not by the path the
   * repair gave it (the change says that path).
   */
  namelessBefore?: true;
}

/** Rebuilds one structure of one inode of a live (or, offline, an unmounted) filesystem. */
export type FileRepairOptions = PacedRepairOptions;

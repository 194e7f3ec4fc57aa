/** What every paced repair of one AG takes (the free-space, inode btree and free list repairers). */
import type { PacerOptions } from '../io/pacer';

export interface PacedRepairOptions extends PacerOptions {
  /** Checked between slices: true stops the repair before its commit (ECANCELED). */
  cancelled?: () => boolean;
  /** Run between two slices of the collection (tests change the filesystem there). */
  betweenSlices?: () => Promise<void> | void;
}

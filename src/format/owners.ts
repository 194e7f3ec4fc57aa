/**
 * Owners of space, as the rmap records them. An inode owns its file's data
 * (owner = inode number); metadata has special owners. Inode numbers are
 * never below FIRST_INODE_OWNER (an inode chunk can never sit in an AG's
 * first two blocks), so the small numbers are free for the special owners.
 */
export const OWN_NULL = 0;
/** Superblocks and AG headers: the static fs metadata. */
export const OWN_FS = 1;
/** The journal's region. */
export const OWN_LOG = 2;
/** Free-space btree and rmap btree blocks, and the AG free list that feeds them. */
export const OWN_AG = 3;
/** Inode btree blocks. */
export const OWN_INOBT = 4;
/** Inode chunks. */
export const OWN_INODES = 5;

export const FIRST_INODE_OWNER = 16;

const names: Record<number, string> = {
  [OWN_NULL]: 'null',
  [OWN_FS]: 'fs',
  [OWN_LOG]: 'log',
  [OWN_AG]: 'ag',
  [OWN_INOBT]: 'inobt',
  [OWN_INODES]: 'inodes',
};

export function isInodeOwner(owner: number): boolean {
  return owner >= FIRST_INODE_OWNER;
}

/**
 * An owner as reports name it. `exact`: its decimal text when it is above
 * 2^53 (only damage puts such a number on disk; decodeRmap's ownerExact),
 * which the number alone would round.
 */
export function ownerName(owner: number, exact?: string): string {
  return isInodeOwner(owner) ? `inode ${exact ?? owner}` : (names[owner] ?? `unknown owner ${exact ?? owner}`);
}

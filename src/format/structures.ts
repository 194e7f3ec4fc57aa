/**
 * The metadata structures of an rmapfs, as `check`, `scrub`, `repair`, the
 * health record and `status` name them: the declarative half of the
 * structure table (src/fsck/table.ts adds each one's checker and repairer).
 * One list, kept here, low in the layers, because the allocator's health
 * record (alloc/health.ts) uses the same names.
 *
 * - name: what users type (`--type`), and the health record's key;
 * - scope: one per filesystem, one per AG, or one per inode;
 * - dependsOn: the structures that must be healthy before this one can be
 *   rebuilt from them (XFS rebuilds the AG structures from the rmap, and the
 *   rmap from the inodes' forward maps). Repair goes in this order.
 * - findsSourcesThrough: AG structures its rebuild reads in EVERY AG to find
 *   its sources (the rmap's inode scan walks every AG's inode btree to find
 *   the inodes). They must be sound everywhere before it is rebuilt; when
 *   they are damaged too they are rebuilt first, from their own (per-AG)
 *   dependencies -- the inode btree from its AG's rmap, whose inode chunks
 *   it verifies as it reads them.
 */
export type StructureScope = 'filesystem' | 'ag' | 'inode';

export interface StructureFacts {
  readonly name: string;
  readonly scope: StructureScope;
  /** What the user is told it is. */
  readonly label: string;
  readonly dependsOn: readonly string[];
  readonly findsSourcesThrough?: readonly string[];
}

/** The forward maps the rmap is rebuilt from. */
const FORWARD_MAPS = ['inode', 'bmap', 'directory', 'xattr'] as const;

export const STRUCTURES = [
  { name: 'superblock', scope: 'filesystem', label: 'superblock', dependsOn: [] },
  { name: 'secondary-sb', scope: 'ag', label: 'secondary superblock', dependsOn: ['superblock'] },
  { name: 'agh', scope: 'ag', label: 'AG header', dependsOn: ['rmapbt'] },
  { name: 'agfl', scope: 'ag', label: 'free list (AGFL)', dependsOn: ['rmapbt'] },
  { name: 'bnobt', scope: 'ag', label: 'free-space btree (by block)', dependsOn: ['rmapbt'] },
  { name: 'cntbt', scope: 'ag', label: 'free-space btree (by size)', dependsOn: ['rmapbt'] },
  { name: 'rmapbt', scope: 'ag', label: 'rmap btree', dependsOn: FORWARD_MAPS, findsSourcesThrough: ['inobt'] },
  { name: 'inobt', scope: 'ag', label: 'inode btree', dependsOn: ['rmapbt'] },
  { name: 'counters', scope: 'filesystem', label: 'summary counters', dependsOn: ['rmapbt'] },
  { name: 'inode', scope: 'inode', label: 'inode core', dependsOn: [] },
  { name: 'bmap', scope: 'inode', label: 'block map', dependsOn: ['inode'] },
  { name: 'directory', scope: 'inode', label: 'directory', dependsOn: ['inode'] },
  { name: 'xattr', scope: 'inode', label: 'extended attributes', dependsOn: ['inode'] },
  { name: 'symlink', scope: 'inode', label: 'symlink target', dependsOn: ['inode'] },
  // Counted from every directory's names: the directories must be sound first.
  { name: 'nlinks', scope: 'filesystem', label: 'link counts', dependsOn: ['directory'] },
] as const satisfies readonly StructureFacts[];

export type StructureName = (typeof STRUCTURES)[number]['name'];
type OfScope<S extends StructureScope> = Extract<(typeof STRUCTURES)[number], { scope: S }>['name'];
/** The structures every AG has one of. */
export type AgStructure = OfScope<'ag'>;
/** The structures the filesystem has one of. */
export type FsStructure = OfScope<'filesystem'>;
/** The structures every inode (of a kind) has one of. */
export type InodeStructure = OfScope<'inode'>;

/** Every structure's name, in table order. */
export const ALL_STRUCTURES: readonly StructureName[] = STRUCTURES.map((s) => s.name);

export function structureFacts(name: StructureName): StructureFacts {
  return STRUCTURES.find((s) => s.name === name)!;
}

export function isStructureName(name: string): name is StructureName {
  return (ALL_STRUCTURES as readonly string[]).includes(name);
}

/** What the user is told each structure is. */
export function structureLabel(name: StructureName): string {
  return structureFacts(name).label;
}

export function isInodeStructure(name: StructureName): name is InodeStructure {
  return structureFacts(name).scope === 'inode';
}

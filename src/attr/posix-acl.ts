/**
 * POSIX ACLs (acl(5)) as the kernel hands them to a FUSE filesystem and as
 * rmapfs stores them: the values of the attributes system.posix_acl_access
 * and system.posix_acl_default, in the posix_acl_xattr form
 * (include/uapi/linux/posix_acl_xattr.h): a little-endian u32 version (2),
 * then 8-byte entries { u16 tag, u16 perm, u32 id }. The id means something
 * only for named users and groups; the kernel writes -1 in the others.
 *
 * With FUSE_CAP_POSIX_ACL the kernel enforces the ACLs (generic_permission
 * reads them back through getxattr and caches them) but leaves the rest to
 * the filesystem, as ext4's and XFS's own code does it: the mode follows an
 * access ACL (set_acl's posix_acl_update_mode), chmod rewrites the ACL
 * (posix_acl_chmod), a new inode inherits its directory's default ACL
 * (posix_acl_create). The functions here are those of fs/posix_acl.c, on
 * decoded entries, so that Rmapfs can do each in its transaction.
 */
import { RmapfsError } from '../errors';

export const ACL_ACCESS_NAME = 'system.posix_acl_access';
export const ACL_DEFAULT_NAME = 'system.posix_acl_default';
export const POSIX_ACL_NAMES: ReadonlySet<string> = new Set([ACL_ACCESS_NAME, ACL_DEFAULT_NAME]);

/** POSIX_ACL_XATTR_VERSION. */
const XATTR_VERSION = 2;
const HEADER_SIZE = 4;
const ENTRY_SIZE = 8;

/** Entry tags (e_tag), in the order a valid ACL lists them. */
export const ACL_USER_OBJ = 0x01;
export const ACL_USER = 0x02;
export const ACL_GROUP_OBJ = 0x04;
export const ACL_GROUP = 0x08;
export const ACL_MASK = 0x10;
export const ACL_OTHER = 0x20;
/** ACL_UNDEFINED_ID: the id of an entry that names no one (and an id that can never be valid). */
const UNDEFINED_ID = 0xffffffff;
const ACL_PERMS = 0o7;

const S_IRWXU = 0o700;
const S_IRWXG = 0o070;
const S_IRWXO = 0o007;
const S_IRWXUGO = 0o777;

export interface AclEntry {
  tag: number;
  perm: number;
  /** A named user's uid or group's gid; UNDEFINED_ID for the other tags. */
  id: number;
}

/** The acl's entries in the on-disk / xattr form. */
export function encodeAcl(entries: readonly AclEntry[]): Buffer {
  const b = Buffer.alloc(HEADER_SIZE + ENTRY_SIZE * entries.length);
  b.writeUInt32LE(XATTR_VERSION, 0);
  entries.forEach((e, i) => {
    const at = HEADER_SIZE + ENTRY_SIZE * i;
    b.writeUInt16LE(e.tag, at);
    b.writeUInt16LE(e.perm, at + 2);
    b.writeUInt32LE(e.tag === ACL_USER || e.tag === ACL_GROUP ? e.id : UNDEFINED_ID, at + 4);
  });
  return b;
}

/**
 * What is wrong with an ACL value, or null: the checks of the kernel's
 * posix_acl_from_xattr (size, version, known tags, a valid id for named
 * entries) and posix_acl_valid (permission bits, one owner, group and other
 * entry, named ones between, in tag order, a mask whenever there are named
 * entries). An empty ACL (the header alone) is valid: it means none.
 */
export function aclProblem(value: Buffer): string | null {
  if (value.length < HEADER_SIZE) return `${value.length} bytes, shorter than the ACL header`;
  if ((value.length - HEADER_SIZE) % ENTRY_SIZE !== 0) return `${value.length} bytes is not a whole number of ACL entries`;
  const version = value.readUInt32LE(0);
  if (version !== XATTR_VERSION) return `ACL version ${version}, not ${XATTR_VERSION}`;
  // posix_acl_valid's walk: USER_OBJ, USER*, GROUP_OBJ, GROUP*, [MASK], OTHER.
  let state = ACL_USER_OBJ;
  let needsMask = false;
  const count = (value.length - HEADER_SIZE) / ENTRY_SIZE;
  for (let i = 0; i < count; i++) {
    const at = HEADER_SIZE + ENTRY_SIZE * i;
    const tag = value.readUInt16LE(at);
    const perm = value.readUInt16LE(at + 2);
    const id = value.readUInt32LE(at + 4);
    if ((perm & ~ACL_PERMS) !== 0) return `entry ${i}: permission bits ${perm.toString(8)} beyond rwx`;
    const wrongPlace = `entry ${i}: tag ${tag.toString(16)} out of order`;
    switch (tag) {
      case ACL_USER_OBJ:
        if (state !== ACL_USER_OBJ) return wrongPlace;
        state = ACL_USER;
        break;
      case ACL_USER:
        if (state !== ACL_USER) return wrongPlace;
        if (id === UNDEFINED_ID) return `entry ${i}: named user with no uid`;
        needsMask = true;
        break;
      case ACL_GROUP_OBJ:
        if (state !== ACL_USER) return wrongPlace;
        state = ACL_GROUP;
        break;
      case ACL_GROUP:
        if (state !== ACL_GROUP) return wrongPlace;
        if (id === UNDEFINED_ID) return `entry ${i}: named group with no gid`;
        needsMask = true;
        break;
      case ACL_MASK:
        if (state !== ACL_GROUP) return wrongPlace;
        state = ACL_OTHER;
        break;
      case ACL_OTHER:
        if (state === ACL_OTHER || (state === ACL_GROUP && !needsMask)) {
          state = 0;
          break;
        }
        return needsMask && state === ACL_GROUP ? `entry ${i}: named entries but no mask` : wrongPlace;
      default:
        return `entry ${i}: unknown tag ${tag.toString(16)}`;
    }
  }
  if (count > 0 && state !== 0) return 'the ACL lacks an owner, group or other entry';
  return null;
}

/**
 * What is wrong with an attribute as a POSIX ACL, or null (also for every
 * other name): a value the kernel would refuse (posix_acl_from_xattr,
 * posix_acl_valid), or a default ACL on something that is not a directory.
 * The file scrub reports such a value, and the attribute repair drops it.
 */
export function posixAclProblem(name: Buffer, value: Buffer, isDir: boolean): string | null {
  const key = name.toString('latin1');
  if (!POSIX_ACL_NAMES.has(key)) return null;
  const problem = aclProblem(value);
  if (problem !== null) return `${key}: malformed ACL (${problem})`;
  if (key === ACL_DEFAULT_NAME && !isDir) return `${key}: a default ACL on a file that is not a directory`;
  return null;
}

/**
 * The entries of a valid ACL value ([] for an empty one); any other is
 * EINVAL naming what is wrong -- but EOPNOTSUPP for another version, as
 * posix_acl_from_xattr answers.
 */
export function decodeAcl(value: Buffer): AclEntry[] {
  const problem = aclProblem(value);
  if (problem !== null) {
    const otherVersion = value.length >= HEADER_SIZE && value.readUInt32LE(0) !== XATTR_VERSION;
    throw new RmapfsError(otherVersion ? 'EOPNOTSUPP' : 'EINVAL', `malformed ACL: ${problem}`);
  }
  const entries: AclEntry[] = [];
  for (let at = HEADER_SIZE; at < value.length; at += ENTRY_SIZE) {
    entries.push({ tag: value.readUInt16LE(at), perm: value.readUInt16LE(at + 2), id: value.readUInt32LE(at + 4) });
  }
  return entries;
}

/**
 * posix_acl_equiv_mode: the permission bits the ACL gives (the mask standing
 * for the group class when there is one) put into mode, and whether the mode
 * alone says all the ACL says (no named entries, no mask).
 */
export function aclModeOf(entries: readonly AclEntry[], mode: number): { mode: number; equivalent: boolean } {
  let bits = 0;
  let equivalent = true;
  for (const e of entries) {
    switch (e.tag) {
      case ACL_USER_OBJ: bits |= (e.perm & S_IRWXO) << 6; break;
      case ACL_GROUP_OBJ: bits |= (e.perm & S_IRWXO) << 3; break;
      case ACL_OTHER: bits |= e.perm & S_IRWXO; break;
      case ACL_MASK:
        bits = (bits & ~S_IRWXG) | ((e.perm & S_IRWXO) << 3);
        equivalent = false;
        break;
      default: equivalent = false;
    }
  }
  return { mode: (mode & ~S_IRWXUGO) | bits, equivalent };
}

/**
 * posix_acl_chmod: the access ACL after a chmod to mode -- the owner and
 * other entries take the mode's bits, and the mask (the group entry when
 * there is no mask) the group bits. Named entries keep theirs.
 */
export function aclChmod(entries: readonly AclEntry[], mode: number): AclEntry[] {
  const hasMask = entries.some((e) => e.tag === ACL_MASK);
  return entries.map((e) => {
    switch (e.tag) {
      case ACL_USER_OBJ: return { ...e, perm: (mode & S_IRWXU) >> 6 };
      case ACL_OTHER: return { ...e, perm: mode & S_IRWXO };
      case ACL_MASK: return { ...e, perm: (mode & S_IRWXG) >> 3 };
      case ACL_GROUP_OBJ: return hasMask ? e : { ...e, perm: (mode & S_IRWXG) >> 3 };
      default: return e;
    }
  });
}

/**
 * posix_acl_create_masq: a new inode's access ACL from its directory's
 * default ACL and the mode it was created with (no umask: a default ACL
 * replaces it) -- each class's permissions are those both allow -- and its
 * mode, which follows the result. `equivalent`: the mode says it all, no
 * ACL need be stored.
 */
export function aclCreate(defaults: readonly AclEntry[], mode: number): { entries: AclEntry[]; mode: number; equivalent: boolean } {
  let m = mode;
  let equivalent = true;
  const entries = defaults.map((e) => ({ ...e }));
  let groupClass: AclEntry | undefined;
  let mask: AclEntry | undefined;
  for (const e of entries) {
    switch (e.tag) {
      case ACL_USER_OBJ:
        e.perm &= ((m >> 6) | ~S_IRWXO) & ACL_PERMS;
        m &= (e.perm << 6) | ~S_IRWXU;
        break;
      case ACL_OTHER:
        e.perm &= (m | ~S_IRWXO) & ACL_PERMS;
        m &= e.perm | ~S_IRWXO;
        break;
      case ACL_GROUP_OBJ: groupClass ??= e; break;
      case ACL_MASK:
        mask = e;
        equivalent = false;
        break;
      default: equivalent = false;
    }
  }
  const g = mask ?? groupClass;
  if (g !== undefined) {
    g.perm &= ((m >> 3) | ~S_IRWXO) & ACL_PERMS;
    m &= (g.perm << 3) | ~S_IRWXG;
  }
  return { entries, mode: (mode & ~S_IRWXUGO) | (m & S_IRWXUGO), equivalent };
}

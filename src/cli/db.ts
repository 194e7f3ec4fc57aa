/**
 * `rmapfs db`: looks at (and for tests, damages) the on-disk structures by
 * name, in the spirit of xfs_db. It reads and writes raw blocks through the
 * Device -- no buffer cache, no journal, no verifiers -- so it works on a
 * filesystem too corrupt to open, and never replays or writes the log.
 *
 * Fields are decoded with the format's own field tables (SUPERBLOCK_FIELDS,
 * AG_HEADER_FIELDS, INODE_FIELDS) and the btree block layout; a write
 * recomputes the structure's crc32c (the block's, or for an inode that
 * inode's own) unless --keep-crc is given (or the field written is the crc).
 *
 * Besides the AG btrees, the btrees rooted in inodes (a file's block map,
 * a directory's entries) are addressed by filesystem block number
 * (`fsblock`), or walked from their inode (`btree inode`, `records inode`,
 * `ls`).
 */
import * as crypto from 'crypto';
import { RmapfsError } from '../errors';
import { Device } from '../io/device';
import { OFF_CRC, blockCrc, magicOf, magicText } from '../io/meta-header';
import { AGFL_SIZE, AGH_AGBNO, AGH_MAGIC, AG_HEADER_FIELDS, OFF_AGFL, OFF_AGFL_COUNT, SB_AGBNO, SLOT_HEIGHT, SLOT_ROOT, slotOffset } from '../format/ag-header';
import type { AgBtreeName } from '../format/ag-header';
import { FIELD_SIZE, formatUuid, parseUuid } from '../format/fields';
import type { Field } from '../format/fields';
import { INODE_SIZE, INODES_PER_BLOCK } from '../format/geometry';
import { BLOCK_SIZE, SB_MAGIC, SUPERBLOCK_FIELDS } from '../format/superblock';
import { BtreeGeometry, OFF_LEFTSIB, OFF_LEVEL, OFF_NUMRECS, OFF_RIGHTSIB } from '../btree/btree-block';
import type { BtreeOps } from '../btree/btree-ops';
import { NULL_PTR } from '../btree/btree-ops';
import { bnoBtreeOps, cntBtreeOps } from '../alloc/alloc-btree';
import { rmapBtreeOps } from '../rmap/rmap-btree';
import { inoBtreeOps } from '../alloc/inode-btree';
import {
  ATTR_BTREE, ATTR_LOCAL, ATTR_NONE, DATA_FORK_OFFSET, DATA_FORK_SIZE, EXTENT_SIZE, FORK_BTREE, FORK_EXTENTS, FORK_LOCAL,
  INODE_FIELDS, INODE_MAGIC, MAX_INLINE_EXTENTS, OFF_I_AFORMAT, OFF_I_AHEIGHT, OFF_I_ALOCAL, OFF_I_AROOT, OFF_I_CRC,
  OFF_I_DHEIGHT, OFF_I_DROOT, OFF_I_FORMAT, OFF_I_INO, OFF_I_MODE, OFF_I_NEXTENTS, S_IFBLK, S_IFCHR,
  S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK, inodeCrc,
} from '../inode/inode-format';
import { bmapBtreeOps } from '../file/bmap';
import { dirBtreeOps, nameHash } from '../dir/dir';
import { attrBtreeOps } from '../attr/attr';
import { CliError, parseArgs, parseCount, usageError } from './args';
import type { Command, CommandIo } from './args';

/** Names joined with commas, wrapped at 76 columns, continuation lines indented. */
function wrapList(names: readonly string[], indent: number): string {
  const lines: string[] = [];
  let line = '';
  for (const [i, n] of names.entries()) {
    const word = i < names.length - 1 ? `${n},` : n;
    if (line !== '' && indent + line.length + 1 + word.length > 76) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  lines.push(line);
  return lines.join(`\n${' '.repeat(indent)}`);
}

const USAGE = `usage: rmapfs db [--keep-crc] [-c COMMAND]... DEVICE [COMMAND...]

Prints (and, for testing repair, changes) on-disk structures by name. Reads
and writes raw blocks: no cache, no journal replay, no verification, so it
works on a damaged filesystem. Commands run in order; the first that fails
stops the rest.

Giving commands: each -c COMMAND is one command; after DEVICE, an argument
holding spaces is one whole command ('agh 1'), single words are collected
into one command until a ';' argument (\\; in the shell), and ';' inside an
argument separates commands too. Quote a value with spaces inside a command
("set sb 0 label 'my disk'"). Examples:
  rmapfs db img sb
  rmapfs db img 'agh 1' 'btree 0 rmap'
  rmapfs db img set block 0 4 rec[0].blockcount 3 \\; block 0 rmap 4
  rmapfs db img 'inode 128' 'ls 128' 'btree inode 131' 'fsblock 300'
  rmapfs db img 'set inode 131 ext[0].fsbno 999' 'set fsblock 300 rec[2].name xyz'
  rmapfs db img 'delete block 1 4 rec[7]' 'insert block 1 4 rec[9]' \\
    'set block 1 4 rec[9].startblock 300'

Numbers: AGNO an AG number, AGBNO a block number within the AG, FSBNO a
filesystem block number (AGNO * agBlocks + AGBNO), INO an inode number
(AGNO * 2^32 + AGBNO * 8 + slot); TREE one of bno, cnt, rmap, ino (or bnobt,
cntbt, rmapbt, inobt): the AG btrees; or bmbt, dir (or dirbt), attr (or
attrbt): the btrees rooted in an inode (a file's block map, a directory's
entries, extended attributes), whose pointers are FSBNOs and whose blocks'
owner is the inode number.

read commands:
  sb [AGNO]                      the primary superblock (or AG AGNO's copy)
  agh AGNO                       an AG header, with its free list
  btree AGNO TREE                a btree's shape: height, blocks per level,
                                 and every block's header
  btree inode INO                the same for an inode's bmbt or dir btree
  block AGNO [TREE] AGBNO        one btree block: header, then its records
                                 (leaf) or keys and pointers (node); TREE is
                                 taken from the block's magic when omitted
  fsblock [TREE] FSBNO           the same, by filesystem block number (any
                                 btree; the way to reach bmbt and dir blocks)
  records AGNO TREE [--limit N]  the tree's records in key order
  records inode INO [--limit N]  an inode's extents (inline or its bmbt) or
                                 directory entries
  inode INO                      every field of an inode, then its data fork
                                 decoded (inline extents, btree root, or
                                 local data such as a symlink target) and
                                 its attr fork's format
  ls INO                         a directory's entries (inode, type, name),
                                 walking its btree raw as far as it can
  hexdump FSBNO [OFFSET [LENGTH]]  raw bytes of any block (any device)

write commands (add --keep-crc to leave the old crc, so the block, or the
inode, then fails its checksum):
  set sb|agh AGNO FIELD VALUE
  set block AGNO AGBNO [TREE] FIELD VALUE
  set fsblock FSBNO [TREE] FIELD VALUE
  set inode INO FIELD VALUE
  fuzz ... FIELD VERB            the same targets as set
  insert block AGNO AGBNO [TREE] rec[I]|key[I]
  insert fsblock FSBNO [TREE] rec[I]|key[I]
                                 a new entry I in a btree block (a record in
                                 a leaf; a key and its pointer in a node),
                                 the entries from I on moved up, numrecs + 1;
                                 it starts as a copy of the entry it pushed
                                 up (or of the last one): set its fields next
  delete block|fsblock ... rec[I]|key[I]
                                 removes entry I, the entries after it moved
                                 down, numrecs - 1 (neither changes the
                                 parent's keys or the AG header's counts)

fields:
  sb      ${wrapList(SUPERBLOCK_FIELDS.map((f) => f.name), 10)}
  agh     ${wrapList([...AG_HEADER_FIELDS.map((f) => f.name), `agfl[I] (I < ${AGFL_SIZE})`], 10)}
  inode   ${wrapList([...INODE_FIELDS.map((f) => f.name), `ext[I].fileoff|blockcount|fsbno|unwritten (inline extents, I < ${MAX_INLINE_EXTENTS})`], 10)}
  block   magic, level, numrecs, leftsib, rightsib, blkno, lsn, uuid, owner,
  fsblock crc; rec[I].NAME in leaves; key[I].NAME and ptr[I] in nodes:
            bno   rec: startblock, blockcount    key: startblock
            cnt   rec: startblock, blockcount    key: blockcount, startblock
            rmap  rec: startblock, blockcount, owner, offset, flags
                  key: startblock, owner, offset, flags
                  (flags: 4 attr fork, 2 bmbt block, 1 unwritten)
            ino   rec: startino, freecount, freemask    key: startino
            bmbt  rec: fileoff, blockcount, fsbno, unwritten    key: fileoff
            dir   rec: hash, cidx, ftype, namelen, ino, name
                  key: hash, cidx
            attr  rec: hash, cidx, namelen, valuelen, valueblock, name, valuecrc,
                  value (the inline value)    key: hash, cidx
          (setting a name writes the name bytes only: namelen and hash
          stay as they were)
VALUE: a number (decimal or 0x...; a mode also in octal, 0100644), 'null'
for a pointer, four characters for a magic, a UUID for uuid, any text for
label, name and value.
VERB (as xfs_db): zeroes, ones, firstbit (flip the most significant bit),
middlebit, lastbit (the least significant), add (+1, wrapping), sub (-1,
wrapping), random (a random value other than the current one).

options:
  -c, --command COMMAND   a command to run (repeatable; before the others)
  --keep-crc              every set/fuzz leaves the crc as it was
  -h, --help              this text

exit status: 0, 1 when a command fails (not an rmapfs, no such field, I/O
error), 2 usage error.`;

// ---- fields ---------------------------------------------------------------------

/**
 * How a field is shown and parsed: 'label' is text (NUL padded), 'mode' a file mode (octal),
 * 'signed' a two's complement number (inode times: before 1970 is negative).
 */
type FieldKind = 'num' | 'signed' | 'magic' | 'uuid' | 'label' | 'ptr' | 'crc' | 'mode';

/** A field of `bits` bits, `shift` bits up from the bottom of the big-endian integer of `bytes` bytes at `offset`. */
interface DbField {
  name: string;
  offset: number;
  bytes: number;
  bits: number;
  shift: number;
  kind: FieldKind;
}

function field(name: string, offset: number, bytes: number, kind: FieldKind = 'num', bits = bytes * 8, shift = 0): DbField {
  return { name, offset, bytes, bits, shift, kind };
}

function fromTable(f: Field): DbField {
  const kind: FieldKind = f.type === 'uuid' ? 'uuid' : f.type === 'label' ? 'label' : f.type === 'i64' ? 'signed'
    : f.name === 'magic' ? 'magic' : f.name === 'crc' ? 'crc' : 'num';
  return field(f.name, f.offset, FIELD_SIZE[f.type], kind);
}

/** An extent's fields (inline in an inode, or a bmbt record), relative to its start. */
function extentFields(prefix: string, at: number): DbField[] {
  return [
    field(`${prefix}fileoff`, at, 4), field(`${prefix}blockcount`, at + 4, 4, 'num', 31), field(`${prefix}fsbno`, at + 8, 8),
    field(`${prefix}unwritten`, at + 4, 4, 'num', 1, 31),
  ];
}

const SB_FIELDS: DbField[] = SUPERBLOCK_FIELDS.map(fromTable);
const AGH_FIELDS: DbField[] = [
  ...AG_HEADER_FIELDS.map(fromTable),
  ...Array.from({ length: AGFL_SIZE }, (_, i) => field(`agfl[${i}]`, OFF_AGFL + 4 * i, 4)),
];
/** Fields of one inode, relative to the inode's start in its block. */
const INODE_DB_FIELDS: DbField[] = [
  ...INODE_FIELDS.map((f) => (f.name === 'mode' ? field('mode', OFF_I_MODE, 2, 'mode') : fromTable(f))),
  ...Array.from({ length: MAX_INLINE_EXTENTS }, (_, i) => extentFields(`ext[${i}].`, DATA_FORK_OFFSET + i * EXTENT_SIZE)).flat(),
];
const BTREE_HDR_FIELDS: DbField[] = [
  field('magic', 0, 4, 'magic'), field('level', OFF_LEVEL, 2), field('numrecs', OFF_NUMRECS, 2),
  field('leftsib', OFF_LEFTSIB, 4, 'ptr'), field('rightsib', OFF_RIGHTSIB, 4, 'ptr'), field('blkno', 16, 8),
  field('lsn', 24, 8), field('uuid', 32, 16, 'uuid'), field('owner', 48, 8), field('crc', OFF_CRC, 4, 'crc'),
];

type TreeName = AgBtreeName | 'bmbt' | 'dir' | 'attr';

interface TreeType {
  name: TreeName;
  label: string;
  /** An AG btree (rooted in the AG header, agbno pointers), or one rooted in an inode (fsbno pointers). */
  inAg: boolean;
  ops: BtreeOps;
  geo: BtreeGeometry;
  /** Fields relative to the record / key start. */
  rec: DbField[];
  key: DbField[];
}

function treeType(name: TreeName, label: string, ops: BtreeOps, rec: DbField[], key: DbField[]): TreeType {
  return { name, label, inAg: name !== 'bmbt' && name !== 'dir' && name !== 'attr', ops, geo: new BtreeGeometry(ops, BLOCK_SIZE), rec, key };
}

const TREES: TreeType[] = [
  treeType('bno', 'bnobt', bnoBtreeOps, [field('startblock', 0, 4), field('blockcount', 4, 4)], [field('startblock', 0, 4)]),
  treeType('cnt', 'cntbt', cntBtreeOps, [field('startblock', 0, 4), field('blockcount', 4, 4)],
    [field('blockcount', 0, 4), field('startblock', 4, 4)]),
  treeType('rmap', 'rmapbt', rmapBtreeOps,
    [field('startblock', 0, 4), field('blockcount', 4, 4), field('owner', 8, 8), field('offset', 16, 8, 'num', 61),
      field('flags', 16, 8, 'num', 3, 61)],
    [field('startblock', 0, 4), field('owner', 4, 8), field('offset', 12, 8, 'num', 61), field('flags', 12, 8, 'num', 3, 61)]),
  treeType('ino', 'inobt', inoBtreeOps, [field('startino', 0, 4), field('freecount', 4, 4), field('freemask', 8, 8)],
    [field('startino', 0, 4)]),
  treeType('bmbt', 'bmbt', bmapBtreeOps, extentFields('', 0), [field('fileoff', 0, 4)]),
  treeType('dir', 'dirbt', dirBtreeOps,
    [field('hash', 0, 4), field('cidx', 4, 2), field('ftype', 6, 1), field('namelen', 7, 1), field('ino', 8, 8),
      field('name', 16, dirBtreeOps.recSize - 16, 'label')],
    [field('hash', 0, 4), field('cidx', 4, 2)]),
  treeType('attr', 'attrbt', attrBtreeOps,
    [field('hash', 0, 4), field('cidx', 4, 2), field('namelen', 7, 1), field('valuelen', 8, 4), field('valueblock', 12, 4),
      field('name', 16, 256, 'label'), field('value', 272, 64, 'label'), field('valuecrc', 336, 4)],
    [field('hash', 0, 4), field('cidx', 4, 2)]),
];

function findTree(name: string): TreeType {
  const t = TREES.find((x) => x.name === name || x.label === name || x.ops.name === name);
  if (t === undefined) throw new CliError(1, 'EINVAL', `unknown btree '${name}' (bno, cnt, rmap, ino, bmbt, dir, attr)`);
  return t;
}

/** A tree the AG header roots. */
function findAgTree(name: string): TreeType {
  const t = findTree(name);
  if (!t.inAg) throw new CliError(1, 'EINVAL', `${t.label} is not an AG btree: its root is in an inode ('btree inode INO', 'fsblock FSBNO')`);
  return t;
}

function treeByMagic(magic: number): TreeType | undefined {
  return TREES.find((t) => t.ops.magic === magic);
}

function mask(bits: number): bigint {
  return (1n << BigInt(bits)) - 1n;
}

function readRaw(b: Buffer, at: number, bytes: number): bigint {
  let v = 0n;
  for (let i = 0; i < bytes; i++) v = (v << 8n) | BigInt(b[at + i]!);
  return v;
}

function writeRaw(b: Buffer, at: number, bytes: number, v: bigint): void {
  let x = v;
  for (let i = bytes - 1; i >= 0; i--) {
    b[at + i] = Number(x & 0xffn);
    x >>= 8n;
  }
}

function getValue(b: Buffer, base: number, f: DbField): bigint {
  return (readRaw(b, base + f.offset, f.bytes) >> BigInt(f.shift)) & mask(f.bits);
}

function setValue(b: Buffer, base: number, f: DbField, v: bigint): void {
  const raw = readRaw(b, base + f.offset, f.bytes);
  const m = mask(f.bits) << BigInt(f.shift);
  writeRaw(b, base + f.offset, f.bytes, (raw & ~m) | ((v << BigInt(f.shift)) & m));
}

function show(f: DbField, v: bigint): string {
  switch (f.kind) {
    case 'magic': {
      const hex = `0x${v.toString(16).padStart(8, '0')}`;
      const text = magicText(Number(v));
      return text.startsWith('0x') ? hex : `${text} (${hex})`;
    }
    case 'uuid': return formatUuid(Buffer.from(v.toString(16).padStart(32, '0'), 'hex'));
    case 'label': {
      const raw = Buffer.from(v.toString(16).padStart(2 * f.bytes, '0'), 'hex');
      const end = raw.indexOf(0);
      return JSON.stringify(raw.subarray(0, end < 0 ? raw.length : end).toString('utf8'));
    }
    case 'ptr': return v === BigInt(NULL_PTR) ? 'null' : v.toString();
    case 'crc': return `0x${v.toString(16).padStart(8, '0')}`;
    case 'mode': return `${v === 0n ? '' : '0'}${v.toString(8)} (${typeName(Number(v))})`;
    case 'num': return v.toString();
    case 'signed': return BigInt.asIntN(f.bits, v).toString();
  }
}

function parseValue(f: DbField, text: string): bigint {
  let v: bigint;
  if (f.kind === 'uuid') {
    v = BigInt(`0x${parseUuid(text).toString('hex')}`);
  } else if (f.kind === 'label') {
    const bytes = Buffer.from(text, 'utf8');
    if (bytes.length > f.bytes) throw new CliError(1, 'EINVAL', `${f.name}: '${text}' is longer than ${f.bytes} bytes`);
    const padded = Buffer.alloc(f.bytes);
    bytes.copy(padded);
    v = BigInt(`0x${padded.toString('hex')}`);
  } else if (f.kind === 'ptr' && text === 'null') {
    v = BigInt(NULL_PTR);
  } else if (f.kind === 'magic' && text.length === 4 && !/^\d+$/.test(text)) {
    v = BigInt(magicOf(text));
  } else if (f.kind === 'mode' && /^0o?[0-7]+$/.test(text)) {
    v = BigInt(`0o${text.replace(/^0o?/, '') || '0'}`);
  } else if (f.kind === 'signed' && /^-\d+$/.test(text)) {
    v = BigInt(text);
    if (v < -(1n << BigInt(f.bits - 1))) throw new CliError(1, 'EINVAL', `${f.name}: ${text} does not fit in ${f.bits} bits`);
    v = BigInt.asUintN(f.bits, v);
  } else if (/^\d+$/.test(text) || /^0x[0-9a-f]+$/i.test(text)) {
    v = BigInt(text);
  } else {
    throw new CliError(1, 'EINVAL', `${f.name}: '${text}' is not a value for this field`);
  }
  if (v > mask(f.bits)) throw new CliError(1, 'EINVAL', `${f.name}: ${text} does not fit in ${f.bits} bits`);
  return v;
}

const FILE_TYPES: [number, string, string][] = [
  [S_IFREG, 'regular file', 'reg'], [S_IFDIR, 'directory', 'dir'], [S_IFLNK, 'symlink', 'lnk'], [S_IFIFO, 'fifo', 'fifo'],
  [S_IFCHR, 'character device', 'chr'], [S_IFBLK, 'block device', 'blk'], [S_IFSOCK, 'socket', 'sock'],
];

/** What a mode says the inode is ("free" for mode 0). */
function typeName(mode: number): string {
  if (mode === 0) return 'free';
  const t = FILE_TYPES.find(([bits]) => bits === (mode & S_IFMT));
  return t !== undefined ? t[1] : `unknown type 0${(mode & S_IFMT).toString(8)}`;
}

/** A directory entry's file type (mode >> 12) in a word. */
function ftypeName(ftype: number): string {
  const t = FILE_TYPES.find(([bits]) => bits >>> 12 === ftype);
  return t !== undefined ? t[2] : `type${ftype}`;
}

export const FUZZ_VERBS = ['zeroes', 'ones', 'firstbit', 'middlebit', 'lastbit', 'add', 'sub', 'random'] as const;

/** A field's new value under a fuzz verb (xfs_db's semantics). */
export function fuzzValue(verb: string, old: bigint, bits: number): bigint {
  const m = mask(bits);
  switch (verb) {
    case 'zeroes': return 0n;
    case 'ones': return m;
    case 'firstbit': return old ^ (1n << BigInt(bits - 1));
    case 'middlebit': return old ^ (1n << BigInt(bits - 1 - Math.floor(bits / 2)));
    case 'lastbit': return old ^ 1n;
    case 'add': return (old + 1n) & m;
    case 'sub': return (old - 1n) & m;
    case 'random': {
      for (;;) {
        const v = readRaw(crypto.randomBytes(Math.ceil(bits / 8)), 0, Math.ceil(bits / 8)) & m;
        if (v !== old || bits === 0) return v;
      }
    }
    default:
      throw new CliError(1, 'EINVAL', `unknown fuzz verb '${verb}' (${FUZZ_VERBS.join(', ')})`);
  }
}

// ---- the device -----------------------------------------------------------------

/** A raw view of the device with the geometry the primary superblock claims. */
class RawFs {
  readonly blocks: number;
  private sbChecked = false;
  private agBlocks = 0;
  private agCount = 0;

  constructor(readonly device: Device) {
    this.blocks = Math.floor(device.size / BLOCK_SIZE);
  }

  read(fsbno: number): Buffer {
    if (!Number.isSafeInteger(fsbno) || fsbno < 0 || fsbno >= this.blocks) {
      throw new CliError(1, 'EINVAL', `block ${fsbno} is outside the device (${this.blocks} blocks)`);
    }
    const b = Buffer.alloc(BLOCK_SIZE);
    this.device.read(fsbno * BLOCK_SIZE, b, 0, BLOCK_SIZE);
    return b;
  }

  write(fsbno: number, b: Buffer): void {
    this.device.write(fsbno * BLOCK_SIZE, b, 0, BLOCK_SIZE);
    this.device.sync();
    if (fsbno === 0) this.sbChecked = false; // the geometry may have changed
  }

  /** Structured commands need an rmapfs: a superblock in block 0 (or, if it is damaged, an AG header in block 1). */
  requireRmapfs(): void {
    if (this.sbChecked) return;
    const sb = this.blocks >= 2 ? this.read(0) : null;
    const ok = sb !== null && (sb.readUInt32BE(0) === SB_MAGIC || this.read(AGH_AGBNO).readUInt32BE(0) === AGH_MAGIC);
    if (!ok) throw new CliError(1, 'EINVAL', `${this.device.path} is not an rmapfs filesystem (no superblock)`);
    this.agBlocks = sb.readUInt32BE(64 + 8);
    this.agCount = sb.readUInt32BE(64 + 12);
    this.sbChecked = true;
  }

  /** First block of an AG; AGs past the device's end or beyond a damaged agBlocks are refused. */
  agStart(agno: number): number {
    this.requireRmapfs();
    if (agno === 0) return 0;
    if (this.agBlocks < 64 || this.agBlocks > this.blocks) {
      throw new CliError(1, 'EFSCORRUPTED', `the primary superblock's agBlocks (${this.agBlocks}) is unusable: only AG 0 can be addressed`);
    }
    const start = agno * this.agBlocks;
    if (start >= this.blocks) {
      throw new CliError(1, 'EINVAL', `AG ${agno} is past the end of the device (${this.agCount} AGs of ${this.agBlocks} blocks)`);
    }
    return start;
  }

  agLength(agno: number): number {
    const start = this.agStart(agno);
    const per = this.agBlocks >= 64 && this.agBlocks <= this.blocks ? this.agBlocks : this.blocks;
    return Math.min(per, this.blocks - start);
  }

  /** The AG and AG block of a filesystem block number (null when the superblock's agBlocks is unusable). */
  agPos(fsbno: number): { agno: number; agbno: number } | null {
    this.requireRmapfs();
    if (this.agBlocks < 64 || this.agBlocks > this.blocks) return null;
    return { agno: Math.floor(fsbno / this.agBlocks), agbno: fsbno % this.agBlocks };
  }

  /** "AG a block b" for a filesystem block number ('' when the superblock's agBlocks is unusable). */
  whereIs(fsbno: number): string {
    const pos = this.agPos(fsbno);
    return pos === null ? '' : `AG ${pos.agno} block ${pos.agbno}`;
  }

  /** Where an inode lives (ino = agno * 2^32 + agino; agino = agbno * 8 + slot): its block and byte offset. */
  inodeAt(ino: number): { agno: number; agbno: number; fsbno: number; offset: number } {
    const agno = Math.floor(ino / 2 ** 32);
    const agino = ino % 2 ** 32;
    const agbno = Math.floor(agino / INODES_PER_BLOCK);
    if (agbno >= this.agLength(agno)) throw new CliError(1, 'EINVAL', `inode ${ino} would be in AG ${agno} block ${agbno}, past the AG's end`);
    return { agno, agbno, fsbno: this.agStart(agno) + agbno, offset: (agino % INODES_PER_BLOCK) * INODE_SIZE };
  }
}

// ---- command plumbing -----------------------------------------------------------

interface Target {
  what: string;
  /** What the structure is called in a 'no such field' error. */
  noun: string;
  fsbno: number;
  fields: DbField[];
  /** Byte offset the fields are relative to. */
  base: number;
  /** Field families listed in a 'no such field' error, after the plain names. */
  families: string;
  /** Recomputes the structure's crc after a change. */
  fixCrc(b: Buffer): void;
}

function fixBlockCrc(b: Buffer): void {
  b.writeUInt32BE(blockCrc(b), OFF_CRC);
}

function crcText(have: number, want: number): string {
  return have === want ? 'crc ok' : `crc BAD (stored 0x${have.toString(16).padStart(8, '0')}, computed 0x${want.toString(16).padStart(8, '0')})`;
}

function crcNote(b: Buffer): string {
  return crcText(b.readUInt32BE(OFF_CRC), blockCrc(b));
}

function printFields(io: CommandIo, b: Buffer, base: number, fields: readonly DbField[]): void {
  const width = Math.max(...fields.map((f) => f.name.length));
  for (const f of fields) io.out(`${f.name.padEnd(width)} = ${show(f, getValue(b, base, f))}`);
}

function num(text: string | undefined, what: string): number {
  if (text === undefined) throw usageError(`missing ${what}`);
  try {
    return parseCount(text, what);
  } catch {
    throw new CliError(1, 'EINVAL', `bad ${what} '${text}'`);
  }
}

function arity(cmd: string[], min: number, max: number, synopsis: string): void {
  if (cmd.length - 1 < min || cmd.length - 1 > max) throw usageError(`usage: ${synopsis}`);
}

/** The fields of a btree block named FIELD: header fields, rec[I].NAME, key[I].NAME, ptr[I]. */
function btreeField(b: Buffer, name: string, tree: TreeType | undefined): { field: DbField; base: number } {
  const hdr = BTREE_HDR_FIELDS.find((f) => f.name === name);
  if (hdr !== undefined) return { field: hdr, base: 0 };
  const m = /^(rec|key|ptr)\[(\d+)\](?:\.(\w+))?$/.exec(name);
  if (m === null) {
    throw new CliError(1, 'EINVAL', `a btree block has no field '${name}' (${BTREE_HDR_FIELDS.map((f) => f.name).join(', ')}, rec[I].NAME, key[I].NAME, ptr[I])`);
  }
  if (tree === undefined) {
    throw new CliError(1, 'EINVAL', `the block's magic ${magicText(b.readUInt32BE(0))} names no btree type: give TREE before the field`);
  }
  const [, kind, idx, sub] = m as unknown as [string, 'rec' | 'key' | 'ptr', string, string | undefined];
  const i = Number(idx);
  const level = b.readUInt16BE(OFF_LEVEL);
  if (kind === 'rec' && level !== 0) throw new CliError(1, 'EINVAL', `the block is a node (level ${level}): it has key[I] and ptr[I], not records`);
  if (kind !== 'rec' && level === 0) throw new CliError(1, 'EINVAL', `the block is a leaf: it has rec[I], not ${kind}s`);
  const max = kind === 'rec' ? tree.geo.maxLeafRecs : tree.geo.maxNodeRecs;
  if (i >= max) throw new CliError(1, 'EINVAL', `${kind}[${i}]: a ${tree.label} block holds at most ${max}`);
  if (kind === 'ptr') {
    if (sub !== undefined) throw new CliError(1, 'EINVAL', `ptr[${i}] has no fields`);
    return { field: field(`ptr[${i}]`, 0, 4, 'ptr'), base: tree.geo.ptrOffset(i) };
  }
  const fields = kind === 'rec' ? tree.rec : tree.key;
  const f = fields.find((x) => x.name === sub);
  if (f === undefined) {
    throw new CliError(1, 'EINVAL', `a ${tree.label} ${kind === 'rec' ? 'record' : 'key'} has no field '${sub ?? ''}' (${fields.map((x) => x.name).join(', ')})`);
  }
  return { field: { ...f, name: `${kind}[${i}].${f.name}` }, base: kind === 'rec' ? tree.geo.recOffset(i) : tree.geo.keyOffset(i) };
}

function formatKey(tree: TreeType, b: Buffer, base: number): string {
  return tree.key.map((f) => `${f.name} ${show(f, getValue(b, base, f))}`).join(' ');
}

/** One btree block, at any filesystem block: header, crc, then its entries. */
function printBlock(io: CommandIo, raw: RawFs, fsbno: number, title: string, treeName: string | undefined): void {
  const b = raw.read(fsbno);
  const magic = b.readUInt32BE(0);
  const tree = treeName !== undefined ? findTree(treeName) : treeByMagic(magic);
  io.out(`${title}${tree !== undefined ? `: ${tree.label}` : ''}, ${crcNote(b)}`);
  if (tree !== undefined && tree.ops.magic !== magic) io.out(`warning: magic ${magicText(magic)} is not ${tree.label}'s ${magicText(tree.ops.magic)}`);
  printFields(io, b, 0, BTREE_HDR_FIELDS);
  if (tree === undefined) {
    const pos = raw.agPos(fsbno);
    if (magic === INODE_MAGIC && pos !== null) {
      const first = pos.agno * 2 ** 32 + pos.agbno * INODES_PER_BLOCK;
      io.out(`(an inode block: inodes ${first}..${first + INODES_PER_BLOCK - 1}; see 'inode INO')`);
    } else {
      io.out(`(magic ${magicText(magic)} names no btree type: give TREE to see the entries)`);
    }
    return;
  }
  const level = b.readUInt16BE(OFF_LEVEL);
  const n = b.readUInt16BE(OFF_NUMRECS);
  const max = level === 0 ? tree.geo.maxLeafRecs : tree.geo.maxNodeRecs;
  if (n > max) io.out(`warning: numrecs ${n} is more than a block holds (${max}); showing ${max}`);
  for (let i = 0; i < Math.min(n, max); i++) {
    if (level === 0) {
      io.out(`rec[${i}] = ${tree.ops.formatRecord!(b, tree.geo.recOffset(i))}`);
    } else {
      const ptr = b.readUInt32BE(tree.geo.ptrOffset(i));
      io.out(`key[${i}] = ${formatKey(tree, b, tree.geo.keyOffset(i))}  ptr[${i}] = ${ptr === NULL_PTR ? 'null' : ptr}`);
    }
  }
}

/** A btree to walk: its root and height, and how its pointers become block numbers. */
interface TreeRef {
  tree: TreeType;
  /** What holds the root: "AG header", "inode". */
  rootHolder: string;
  root: number;
  height: number;
  /** The filesystem block a pointer names, or why it names none. */
  locate(ptr: number): number | string;
  /** The owner every block must carry (the inode, for the btrees rooted in one), or null. */
  owner: number | null;
}

/** An AG btree as the AG header roots it. */
function agTreeRef(raw: RawFs, agno: number, tree: TreeType): TreeRef & { header: Buffer } {
  const start = raw.agStart(agno);
  const length = raw.agLength(agno);
  const h = raw.read(start + AGH_AGBNO);
  const slot = slotOffset(tree.name as AgBtreeName);
  return {
    tree, rootHolder: 'AG header', header: h, owner: null,
    root: h.readUInt32BE(slot + SLOT_ROOT), height: h.readUInt32BE(slot + SLOT_HEIGHT),
    locate: (ptr) => (ptr < 2 || ptr >= length ? `pointer ${ptr} is outside the AG` : start + ptr),
  };
}

/** An inode's raw 512 bytes (in their block) and where they are. */
function readInode(raw: RawFs, ino: number): { b: Buffer; off: number; at: ReturnType<RawFs['inodeAt']> } {
  const at = raw.inodeAt(ino);
  return { b: raw.read(at.fsbno), off: at.offset, at };
}

/** The btree type an inode's data fork holds: a directory's entries or a block map (by the root's magic when the mode is no help). */
function forkTreeType(raw: RawFs, b: Buffer, off: number): TreeType {
  const type = b.readUInt16BE(off + OFF_I_MODE) & S_IFMT;
  if (type === S_IFDIR) return findTree('dir');
  if (type === S_IFREG || type === S_IFLNK) return findTree('bmbt');
  const root = b.readUInt32BE(off + OFF_I_DROOT);
  const byMagic = root >= 2 && root < raw.blocks ? treeByMagic(raw.read(root).readUInt32BE(0)) : undefined;
  return byMagic?.name === 'dir' ? byMagic : findTree('bmbt');
}

/** The btree rooted in an inode's data fork (a bmbt or a directory's). */
function forkTreeRef(raw: RawFs, ino: number): TreeRef & { nextents: number } {
  const { b, off } = readInode(raw, ino);
  const format = b.readUInt8(off + OFF_I_FORMAT);
  if (format !== FORK_BTREE) throw new CliError(1, 'EINVAL', `inode ${ino}'s data fork is not a btree (${forkFormatName(format)})`);
  return {
    tree: forkTreeType(raw, b, off), rootHolder: 'inode', owner: ino, nextents: b.readUInt32BE(off + OFF_I_NEXTENTS),
    root: b.readUInt32BE(off + OFF_I_DROOT), height: b.readUInt32BE(off + OFF_I_DHEIGHT),
    locate: (ptr) => (ptr < 2 || ptr >= raw.blocks ? `pointer ${ptr} is outside the filesystem` : ptr),
  };
}

function forkFormatName(format: number): string {
  return format === FORK_EXTENTS ? 'extents' : format === FORK_BTREE ? 'btree' : format === FORK_LOCAL ? 'local' : `unknown format ${format}`;
}

/**
 * Walks a tree level by level from the root (leftmost block by ptr[0], then
 * along the right siblings), stopping a level at a bad pointer, a loop or a
 * block of another type. visit returns false to stop the walk.
 */
function walkTree(raw: RawFs, ref: TreeRef, fromLevel: number | null,
  visit: (level: number, ptr: number, b: Buffer) => boolean | void, note: (text: string) => void): void {
  const { tree, root, height } = ref;
  if (height < 1 || height > 32) {
    note(`the ${ref.rootHolder} says the height is ${height}`);
    return;
  }
  const seen = new Set<number>();
  let leftmost = root;
  for (let level = height - 1; level >= 0; level--) {
    let ptr = leftmost;
    let first = true;
    while (ptr !== NULL_PTR) {
      const fsbno = ref.locate(ptr);
      if (typeof fsbno === 'string') {
        note(`level ${level}: ${fsbno}`);
        return;
      }
      if (seen.has(ptr)) {
        note(`level ${level}: block ${ptr} was reached before (a loop)`);
        break;
      }
      seen.add(ptr);
      const b = raw.read(fsbno);
      if (b.readUInt32BE(0) !== tree.ops.magic) {
        note(`level ${level}: block ${ptr} has magic ${magicText(b.readUInt32BE(0))}, not ${magicText(tree.ops.magic)}`);
        return;
      }
      if (b.readUInt16BE(OFF_LEVEL) !== level) note(`block ${ptr} says it is at level ${b.readUInt16BE(OFF_LEVEL)}, found at ${level}`);
      if (ref.owner !== null && readRaw(b, 48, 8) !== BigInt(ref.owner)) note(`block ${ptr} has owner ${readRaw(b, 48, 8)}, not inode ${ref.owner}`);
      if (first && level > 0) leftmost = b.readUInt32BE(tree.geo.ptrOffset(0));
      first = false;
      if ((fromLevel === null || level <= fromLevel) && visit(level, ptr, b) === false) return;
      ptr = b.readUInt32BE(OFF_RIGHTSIB);
    }
  }
}

function printTree(io: CommandIo, raw: RawFs, ref: TreeRef, title: string, counts: string): void {
  io.out(`${title}: root ${ref.root}, height ${ref.height} (${counts})`);
  const perLevel = new Map<number, string[]>();
  const notes: string[] = [];
  let records = 0;
  walkTree(raw, ref, null, (level, ptr, b) => {
    const n = b.readUInt16BE(OFF_NUMRECS);
    if (level === 0) records += n;
    const left = b.readUInt32BE(OFF_LEFTSIB);
    const right = b.readUInt32BE(OFF_RIGHTSIB);
    const lines = perLevel.get(level) ?? [];
    lines.push(`  block ${ptr}: numrecs ${n}, leftsib ${left === NULL_PTR ? 'null' : left}, rightsib ${right === NULL_PTR ? 'null' : right}, `
      + `owner ${readRaw(b, 48, 8)}, lsn ${readRaw(b, 24, 8)}, ${crcNote(b)}`);
    perLevel.set(level, lines);
  }, (t) => notes.push(t));
  for (const level of [...perLevel.keys()].sort((a, b) => b - a)) {
    const lines = perLevel.get(level)!;
    io.out(`level ${level}: ${lines.length} block${lines.length === 1 ? '' : 's'}`);
    for (const l of lines) io.out(l);
  }
  io.out(`${records} records in ${[...perLevel.values()].reduce((n, l) => n + l.length, 0)} blocks`);
  for (const n of notes) io.out(`warning: ${n}`);
}

function printRecords(io: CommandIo, raw: RawFs, ref: TreeRef, limit: number): void {
  const { tree } = ref;
  let shown = 0;
  let stopped = false;
  walkTree(raw, ref, 0, (_level, _ptr, b) => {
    const n = Math.min(b.readUInt16BE(OFF_NUMRECS), tree.geo.maxLeafRecs);
    for (let i = 0; i < n; i++) {
      if (shown >= limit) {
        stopped = true;
        return false;
      }
      io.out(tree.ops.formatRecord!(b, tree.geo.recOffset(i)));
      shown++;
    }
    return true;
  }, (t) => io.out(`warning: ${t}`));
  if (stopped) io.out(`(stopped after ${limit} records)`);
}

/** `records inode INO`: the inline extents, or the records of the inode's btree. */
function printInodeRecords(io: CommandIo, raw: RawFs, ino: number, limit: number): void {
  const { b, off } = readInode(raw, ino);
  const format = b.readUInt8(off + OFF_I_FORMAT);
  if (format === FORK_BTREE) {
    printRecords(io, raw, forkTreeRef(raw, ino), limit);
    return;
  }
  if (format !== FORK_EXTENTS) throw new CliError(1, 'EINVAL', `inode ${ino}'s data fork holds no records (${forkFormatName(format)}; see 'inode ${ino}')`);
  const n = b.readUInt32BE(off + OFF_I_NEXTENTS);
  if (n > MAX_INLINE_EXTENTS) io.out(`warning: ${n} extents, more than the inode holds (${MAX_INLINE_EXTENTS}); showing ${MAX_INLINE_EXTENTS}`);
  for (let i = 0; i < Math.min(n, MAX_INLINE_EXTENTS); i++) {
    if (i >= limit) {
      io.out(`(stopped after ${limit} records)`);
      return;
    }
    io.out(bmapBtreeOps.formatRecord!(b, off + DATA_FORK_OFFSET + i * EXTENT_SIZE));
  }
}

/** An extent's fields as "fileoff F blockcount C fsbno X unwritten U". */
function formatExtent(b: Buffer, base: number): string {
  return extentFields('', 0).map((f) => `${f.name} ${show(f, getValue(b, base, f))}`).join(' ');
}

/** `inode INO`: every field, then the data fork decoded and the attr fork's format. */
function printInode(io: CommandIo, raw: RawFs, ino: number): void {
  const { b, off, at } = readInode(raw, ino);
  const mode = b.readUInt16BE(off + OFF_I_MODE);
  io.out(`inode ${ino} (AG ${at.agno} block ${at.agbno} slot ${off / INODE_SIZE}, fsbno ${at.fsbno}): ${typeName(mode)}, `
    + crcText(b.readUInt32BE(off + OFF_I_CRC), inodeCrc(b, off)));
  if (b.readUInt32BE(off) !== INODE_MAGIC) io.out(`warning: magic ${magicText(b.readUInt32BE(off))} is not ${magicText(INODE_MAGIC)}`);
  if (readRaw(b, off + OFF_I_INO, 8) !== BigInt(ino)) io.out(`warning: the inode claims to be inode ${readRaw(b, off + OFF_I_INO, 8)}`);
  printFields(io, b, off, INODE_DB_FIELDS.filter((f) => !f.name.includes('[')));
  const format = b.readUInt8(off + OFF_I_FORMAT);
  const n = b.readUInt32BE(off + OFF_I_NEXTENTS);
  switch (format) {
    case FORK_EXTENTS: {
      io.out(`data fork: extents, ${n} in the inode`);
      if (n > MAX_INLINE_EXTENTS) io.out(`warning: ${n} extents, more than the inode holds (${MAX_INLINE_EXTENTS}); showing ${MAX_INLINE_EXTENTS}`);
      for (let i = 0; i < Math.min(n, MAX_INLINE_EXTENTS); i++) io.out(`ext[${i}] = ${formatExtent(b, off + DATA_FORK_OFFSET + i * EXTENT_SIZE)}`);
      break;
    }
    case FORK_BTREE: {
      const tree = forkTreeType(raw, b, off);
      io.out(`data fork: ${tree.label} btree, root ${b.readUInt32BE(off + OFF_I_DROOT)}, height ${b.readUInt32BE(off + OFF_I_DHEIGHT)}, `
        + `${n} records ('btree inode ${ino}', 'records inode ${ino}'${tree.name === 'dir' ? `, 'ls ${ino}'` : ''})`);
      break;
    }
    case FORK_LOCAL: {
      const len = Math.min(n, DATA_FORK_SIZE);
      if (n > DATA_FORK_SIZE) io.out(`warning: ${n} local bytes, more than the fork holds (${DATA_FORK_SIZE})`);
      io.out(`data fork: local, ${n} bytes: ${JSON.stringify(b.subarray(off + DATA_FORK_OFFSET, off + DATA_FORK_OFFSET + len).toString('utf8'))}`);
      break;
    }
    default:
      io.out(`data fork: unknown format ${format}`);
  }
  const aformat = b.readUInt8(off + OFF_I_AFORMAT);
  io.out(`attr fork: ${aformat === ATTR_NONE ? 'none'
    : aformat === ATTR_LOCAL ? `local, ${b.readUInt16BE(off + OFF_I_ALOCAL)} bytes`
      : aformat === ATTR_BTREE ? `btree, root ${b.readUInt32BE(off + OFF_I_AROOT)}, height ${b.readUInt32BE(off + OFF_I_AHEIGHT)}`
        : `unknown format ${aformat}`}`);
}

/** A name as ls shows it: bare when plain printable ASCII, else as a JSON string. */
function showName(name: Buffer): string {
  const text = name.toString('utf8');
  return /^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$/.test(text) && !/["\\]/.test(text) ? text : JSON.stringify(text);
}

/** `ls INO`: a directory's entries, read raw from its btree's leaves. */
function listDirectory(io: CommandIo, raw: RawFs, ino: number): void {
  const ref = forkTreeRef(raw, ino);
  if (ref.tree.name !== 'dir') throw new CliError(1, 'EINVAL', `inode ${ino} is not a directory (its data fork is a ${ref.tree.label})`);
  const { geo } = ref.tree;
  const lines: string[] = [];
  const notes: string[] = [];
  walkTree(raw, ref, 0, (_level, _ptr, b) => {
    for (let i = 0; i < Math.min(b.readUInt16BE(OFF_NUMRECS), geo.maxLeafRecs); i++) {
      const at = geo.recOffset(i);
      const name = b.subarray(at + 16, at + 16 + b.readUInt8(at + 7));
      const target = readRaw(b, at + 8, 8);
      const flags = nameHash(name) !== b.readUInt32BE(at) ? '  (bad hash)' : '';
      lines.push(`${target.toString().padStart(12)}  ${ftypeName(b.readUInt8(at + 6)).padEnd(6)} ${showName(name)}${flags}`);
    }
  }, (t) => notes.push(t));
  io.out(`directory ${ino}: ${lines.length} entries (the inode counts ${ref.nextents})`);
  for (const l of lines) io.out(l);
  for (const n of notes) io.out(`warning: ${n}`);
}

function hexdump(io: CommandIo, b: Buffer, offset: number, length: number): void {
  for (let at = offset; at < offset + length; at += 16) {
    const row = b.subarray(at, Math.min(at + 16, offset + length));
    const hex = [...row].map((x) => x.toString(16).padStart(2, '0')).join(' ');
    const text = [...row].map((x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : '.')).join('');
    io.out(`${at.toString(16).padStart(4, '0')}: ${hex.padEnd(47)}  ${text}`);
  }
}

/** A btree block as a write target (any block: the field names it, or TREE when its magic does not). */
function blockTarget(b: Buffer, what: string, fsbno: number, treeName: string | undefined, name: string): { target: Target; fieldName: string } {
  const tree = treeName !== undefined ? findTree(treeName) : treeByMagic(b.readUInt32BE(0));
  const { field: f, base } = btreeField(b, name, tree);
  return { target: { what, noun: 'block', fsbno, fields: [f], base, families: '', fixCrc: fixBlockCrc }, fieldName: f.name };
}

/** A block named `block AGNO AGBNO [TREE] ...` or `fsblock FSBNO [TREE] ...`, followed by `tail` more words. */
interface NamedBlock {
  what: string;
  fsbno: number;
  b: Buffer;
  treeName: string | undefined;
}

function namedBlock(raw: RawFs, words: string[], tail: number, synopsis: string): NamedBlock {
  const kind = words[0];
  if (kind === 'block') {
    if (words.length !== 3 + tail && words.length !== 4 + tail) throw usageError(`usage: ${synopsis}`);
    const agno = num(words[1], 'AG number');
    const agbno = num(words[2], 'AG block number');
    if (agbno >= raw.agLength(agno)) throw new CliError(1, 'EINVAL', `AG ${agno} has no block ${agbno}`);
    const fsbno = raw.agStart(agno) + agbno;
    return { what: `AG ${agno} block ${agbno}`, fsbno, b: raw.read(fsbno), treeName: words.length === 4 + tail ? words[3] : undefined };
  }
  if (kind === 'fsblock') {
    if (words.length !== 2 + tail && words.length !== 3 + tail) throw usageError(`usage: ${synopsis}`);
    const fsbno = num(words[1], 'block number');
    return { what: `block ${fsbno}`, fsbno, b: raw.read(fsbno), treeName: words.length === 3 + tail ? words[2] : undefined };
  }
  throw usageError(`usage: ${synopsis}`);
}

/** Where `set`/`fuzz` write: the structure named by the words after the verb. */
function writeTarget(raw: RawFs, words: string[], synopsis: string): { target: Target; b: Buffer; fieldName: string; arg: string } {
  const kind = words[0];
  const name = words[words.length - 2]!;
  const arg = words[words.length - 1]!;
  if (kind === 'sb' || kind === 'agh') {
    if (words.length !== 4 && !(kind === 'sb' && words.length === 3)) throw usageError(`usage: ${synopsis}`);
    const agno = words.length === 4 ? num(words[1], 'AG number') : 0;
    const fsbno = raw.agStart(agno) + (kind === 'sb' ? SB_AGBNO : AGH_AGBNO);
    const b = raw.read(fsbno);
    const noun = kind === 'sb' ? 'superblock' : 'header';
    const target: Target = {
      what: `AG ${agno} ${noun}`, noun, fsbno, fields: kind === 'sb' ? SB_FIELDS : AGH_FIELDS, base: 0,
      families: kind === 'sb' ? '' : ', agfl[I]', fixCrc: fixBlockCrc,
    };
    return { target, b, fieldName: name, arg };
  }
  if (kind === 'block' || kind === 'fsblock') {
    const { what, fsbno, b, treeName } = namedBlock(raw, words, 2, synopsis);
    return { ...blockTarget(b, what, fsbno, treeName, name), b, arg };
  }
  if (kind === 'inode') {
    if (words.length !== 4) throw usageError(`usage: ${synopsis}`);
    const ino = num(words[1], 'inode number');
    const { b, off, at } = readInode(raw, ino);
    const target: Target = {
      what: `inode ${ino}`, noun: 'inode', fsbno: at.fsbno, fields: INODE_DB_FIELDS, base: off,
      families: ', ext[I].fileoff|blockcount|fsbno|unwritten',
      fixCrc: (x) => x.writeUInt32BE(inodeCrc(x, off), off + OFF_I_CRC),
    };
    return { target, b, fieldName: name, arg };
  }
  throw usageError(`usage: ${synopsis}`);
}

function findDbField(t: Target, name: string): DbField {
  const f = t.fields.find((x) => x.name === name);
  if (f === undefined) {
    const names = t.fields.filter((x) => !x.name.includes('[')).map((x) => x.name);
    throw new CliError(1, 'EINVAL', `the ${t.noun} has no field '${name}' (${names.join(', ')}${t.families})`);
  }
  return f;
}

function runWrite(io: CommandIo, raw: RawFs, cmd: string[], keepCrcAll: boolean): void {
  const verb = cmd[0]!;
  const keepCrc = keepCrcAll || cmd.includes('--keep-crc');
  const words = cmd.slice(1).filter((w) => w !== '--keep-crc');
  const last = verb === 'set' ? 'VALUE' : 'VERB';
  const synopsis = [`${verb} sb|agh AGNO FIELD ${last}`, `${verb} block AGNO AGBNO [TREE] FIELD ${last}`,
    `${verb} fsblock FSBNO [TREE] FIELD ${last}`, `${verb} inode INO FIELD ${last}`].join(' | ') + ' [--keep-crc]';
  const { target, b, fieldName, arg } = writeTarget(raw, words, synopsis);
  const f = findDbField(target, fieldName);
  const old = getValue(b, target.base, f);
  const value = verb === 'set' ? parseValue(f, arg) : fuzzValue(arg, old, f.bits);
  setValue(b, target.base, f, value);
  const crcKept = keepCrc || f.kind === 'crc';
  if (!crcKept) target.fixCrc(b);
  raw.write(target.fsbno, b);
  io.out(`${target.what}: ${f.name} ${show(f, old)} -> ${show(f, value)}${crcKept && f.kind !== 'crc' ? ' (crc kept)' : ''}`);
}

/**
 * `insert` / `delete`: adds or removes one entry of a btree block (a record
 * in a leaf, a key with its pointer in a node), moving the entries after it
 * and changing numrecs -- the "missing record" and "extra record" damage that
 * set and fuzz cannot make. An inserted entry starts as a copy of the one it
 * pushed up (or of the last, at the end): set its fields next. Nothing else
 * changes (not the parent's keys, not the AG header's record count).
 */
function runEntryEdit(io: CommandIo, raw: RawFs, cmd: string[], keepCrcAll: boolean): void {
  const verb = cmd[0] === 'insert' ? 'insert' : 'delete';
  const keepCrc = keepCrcAll || cmd.includes('--keep-crc');
  const words = cmd.slice(1).filter((w) => w !== '--keep-crc');
  const synopsis = `${verb} block AGNO AGBNO [TREE] rec[I]|key[I] | ${verb} fsblock FSBNO [TREE] rec[I]|key[I] [--keep-crc]`;
  const { what, fsbno, b, treeName } = namedBlock(raw, words, 1, synopsis);
  const entry = words[words.length - 1]!;
  const m = /^(rec|key)\[(\d+)\]$/.exec(entry);
  if (m === null) throw new CliError(1, 'EINVAL', `${verb} takes an entry, rec[I] (a leaf) or key[I] (a node, with its ptr[I]), not '${entry}'`);
  const tree = treeName !== undefined ? findTree(treeName) : treeByMagic(b.readUInt32BE(0));
  if (tree === undefined) {
    throw new CliError(1, 'EINVAL', `the block's magic ${magicText(b.readUInt32BE(0))} names no btree type: give TREE before the entry`);
  }
  const kind = m[1]!;
  const i = Number(m[2]);
  const level = b.readUInt16BE(OFF_LEVEL);
  if (kind === 'rec' && level !== 0) throw new CliError(1, 'EINVAL', `the block is a node (level ${level}): it has key[I] and ptr[I], not records`);
  if (kind === 'key' && level === 0) throw new CliError(1, 'EINVAL', 'the block is a leaf: it has rec[I], not keys');
  const { geo } = tree;
  const n = b.readUInt16BE(OFF_NUMRECS);
  const max = level === 0 ? geo.maxLeafRecs : geo.maxNodeRecs;
  if (n > max) throw new CliError(1, 'EINVAL', `numrecs ${n} is more than a ${tree.label} block holds (${max}): set numrecs first`);
  if (verb === 'delete' && i >= n) throw new CliError(1, 'EINVAL', `${kind}[${i}]: the block holds ${n}`);
  if (verb === 'insert' && i > n) throw new CliError(1, 'EINVAL', `${kind}[${i}]: the block holds ${n}, an entry goes at ${n} at most`);
  if (verb === 'insert' && n === max) throw new CliError(1, 'EINVAL', `the block is full (${max} entries)`);
  // The arrays an entry has a slot in: records in a leaf; keys and pointers in a node.
  const arrays = level === 0
    ? [{ at: geo.recOffset(0), size: tree.ops.recSize }]
    : [{ at: geo.keyOffset(0), size: tree.ops.keySize }, { at: geo.ptrOffset(0), size: 4 }];
  let note: string;
  if (verb === 'delete') {
    note = level === 0 ? tree.ops.formatRecord!(b, geo.recOffset(i)) : `${formatKey(tree, b, geo.keyOffset(i))}  ptr ${b.readUInt32BE(geo.ptrOffset(i))}`;
    for (const a of arrays) {
      b.copyWithin(a.at + i * a.size, a.at + (i + 1) * a.size, a.at + n * a.size);
      b.fill(0, a.at + (n - 1) * a.size, a.at + n * a.size);
    }
    b.writeUInt16BE(n - 1, OFF_NUMRECS);
  } else {
    const from = i < n ? i : n - 1;
    if (from < 0) throw new CliError(1, 'EINVAL', 'the block is empty: there is no entry to copy');
    for (const a of arrays) {
      b.copyWithin(a.at + (i + 1) * a.size, a.at + i * a.size, a.at + n * a.size);
      if (i === n) b.copyWithin(a.at + i * a.size, a.at + from * a.size, a.at + (from + 1) * a.size);
    }
    b.writeUInt16BE(n + 1, OFF_NUMRECS);
    note = `a copy of ${kind}[${from}]`;
  }
  if (!keepCrc) fixBlockCrc(b);
  raw.write(fsbno, b);
  io.out(`${what}: ${kind}[${i}] ${verb === 'delete' ? 'deleted' : 'inserted'} (${note}), numrecs ${n} -> ${verb === 'delete' ? n - 1 : n + 1}`
    + `${keepCrc ? ' (crc kept)' : ''}`);
}

/** Takes "--limit N" out of a command's words. */
function takeLimit(cmd: string[]): { words: string[]; limit: number } {
  const words = [...cmd];
  const li = words.indexOf('--limit');
  if (li < 0) return { words, limit: Infinity };
  const limit = num(words[li + 1], 'limit');
  words.splice(li, 2);
  return { words, limit };
}

function runCommand(io: CommandIo, raw: RawFs, cmd: string[], keepCrc: boolean): void {
  const [name] = cmd;
  switch (name) {
    case 'sb': {
      arity(cmd, 0, 1, 'sb [AGNO]');
      const agno = cmd.length > 1 ? num(cmd[1], 'AG number') : 0;
      const fsbno = raw.agStart(agno) + SB_AGBNO;
      const b = raw.read(fsbno);
      io.out(`AG ${agno} superblock${agno === 0 ? ' (primary)' : ''}, block ${fsbno}, ${crcNote(b)}`);
      printFields(io, b, 0, SB_FIELDS);
      return;
    }
    case 'agh': {
      arity(cmd, 1, 1, 'agh AGNO');
      const agno = num(cmd[1], 'AG number');
      const fsbno = raw.agStart(agno) + AGH_AGBNO;
      const b = raw.read(fsbno);
      io.out(`AG ${agno} header, block ${fsbno}, ${crcNote(b)}`);
      printFields(io, b, 0, AGH_FIELDS.filter((f) => !f.name.startsWith('agfl[')));
      const n = b.readUInt32BE(OFF_AGFL_COUNT);
      const list: number[] = [];
      for (let i = 0; i < Math.min(n, AGFL_SIZE); i++) list.push(b.readUInt32BE(OFF_AGFL + 4 * i));
      io.out(`agfl = [${list.join(', ')}]${n > AGFL_SIZE ? ` (agflCount ${n} is more than the ${AGFL_SIZE} it holds)` : ''}`);
      return;
    }
    case 'btree': {
      arity(cmd, 2, 2, 'btree AGNO TREE | btree inode INO');
      if (cmd[1] === 'inode') {
        const ino = num(cmd[2], 'inode number');
        const ref = forkTreeRef(raw, ino);
        printTree(io, raw, ref, `inode ${ino} ${ref.tree.label}`, `the inode counts ${ref.nextents} records`);
        return;
      }
      const agno = num(cmd[1], 'AG number');
      const ref = agTreeRef(raw, agno, findAgTree(cmd[2]!));
      const slot = slotOffset(ref.tree.name as AgBtreeName);
      printTree(io, raw, ref, `AG ${agno} ${ref.tree.label}`,
        `the header counts ${ref.header.readUInt32BE(slot + 8)} blocks, ${ref.header.readUInt32BE(slot + 12)} records`);
      return;
    }
    case 'block': {
      arity(cmd, 2, 3, 'block AGNO [TREE] AGBNO');
      const agno = num(cmd[1], 'AG number');
      const agbno = num(cmd[cmd.length - 1], 'AG block number');
      if (agbno >= raw.agLength(agno)) throw new CliError(1, 'EINVAL', `AG ${agno} has no block ${agbno}`);
      const fsbno = raw.agStart(agno) + agbno;
      printBlock(io, raw, fsbno, `AG ${agno} block ${agbno} (fsbno ${fsbno})`, cmd.length === 4 ? cmd[2] : undefined);
      return;
    }
    case 'fsblock': {
      arity(cmd, 1, 2, 'fsblock [TREE] FSBNO');
      const fsbno = num(cmd[cmd.length - 1], 'block number');
      const where = raw.whereIs(fsbno);
      printBlock(io, raw, fsbno, `block ${fsbno}${where !== '' ? ` (${where})` : ''}`, cmd.length === 3 ? cmd[1] : undefined);
      return;
    }
    case 'records': {
      const { words, limit } = takeLimit(cmd);
      arity(words, 2, 2, 'records AGNO TREE [--limit N] | records inode INO [--limit N]');
      if (words[1] === 'inode') printInodeRecords(io, raw, num(words[2], 'inode number'), limit);
      else printRecords(io, raw, agTreeRef(raw, num(words[1], 'AG number'), findAgTree(words[2]!)), limit);
      return;
    }
    case 'inode': {
      arity(cmd, 1, 1, 'inode INO');
      printInode(io, raw, num(cmd[1], 'inode number'));
      return;
    }
    case 'ls': {
      arity(cmd, 1, 1, 'ls INO');
      listDirectory(io, raw, num(cmd[1], 'inode number'));
      return;
    }
    case 'hexdump': {
      arity(cmd, 1, 3, 'hexdump FSBNO [OFFSET [LENGTH]]');
      const b = raw.read(num(cmd[1], 'block number'));
      const offset = cmd.length > 2 ? num(cmd[2], 'offset') : 0;
      const length = cmd.length > 3 ? num(cmd[3], 'length') : BLOCK_SIZE - offset;
      if (offset + length > BLOCK_SIZE) throw new CliError(1, 'EINVAL', `${offset}+${length} is past the end of the block`);
      hexdump(io, b, offset, length);
      return;
    }
    case 'set':
    case 'fuzz':
      runWrite(io, raw, cmd, keepCrc);
      return;
    case 'insert':
    case 'delete':
      runEntryEdit(io, raw, cmd, keepCrc);
      return;
    default:
      throw usageError(`unknown db command '${name ?? ''}' (sb, agh, btree, block, fsblock, records, inode, ls, hexdump, set, fuzz, insert, delete; see 'rmapfs db --help')`);
  }
}

/** Splits one command string into words (quotes group, ';' outside quotes separates commands). */
export function splitCommandText(text: string): string[][] {
  const cmds: string[][] = [];
  let words: string[] = [];
  let word: string | null = null;
  let quote: string | null = null;
  const endWord = (): void => {
    if (word !== null) words.push(word);
    word = null;
  };
  const endCmd = (): void => {
    endWord();
    if (words.length > 0) cmds.push(words);
    words = [];
  };
  for (const ch of text) {
    if (quote !== null) {
      if (ch === quote) quote = null;
      else word += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      word ??= '';
    } else if (ch === ';') {
      endCmd();
    } else if (/\s/.test(ch)) {
      endWord();
    } else {
      word = (word ?? '') + ch;
    }
  }
  if (quote !== null) throw usageError(`unterminated quote in '${text}'`);
  endCmd();
  return cmds;
}

/** The commands given after DEVICE (see the usage text for the rules). */
export function commandsFromArgs(args: readonly string[]): string[][] {
  const cmds: string[][] = [];
  let cur: string[] = [];
  const flush = (): void => {
    if (cur.length > 0) cmds.push(cur);
    cur = [];
  };
  for (const a of args) {
    if (/\s|;/.test(a)) {
      flush();
      cmds.push(...splitCommandText(a));
    } else {
      cur.push(a);
    }
  }
  flush();
  return cmds;
}

export const dbCommand: Command = {
  name: 'db',
  summary: 'print or change on-disk structures by name (raw; for debugging and testing repair)',
  usage: USAGE,
  run(argv, io) {
    const args = parseArgs(argv, [
      { name: 'command', kind: 'value', short: 'c', repeat: true },
      { name: 'keep-crc', kind: 'flag' },
    ], { stopAtPositional: true });
    if (args.flag('help')) {
      io.out(USAGE);
      return 0;
    }
    const [path, ...rest] = args.positionals;
    if (path === undefined) throw usageError('missing DEVICE (see --help)');
    const cmds = [...args.strings('command').flatMap(splitCommandText), ...commandsFromArgs(rest)];
    if (cmds.length === 0) throw usageError(`no command given (see 'rmapfs db --help')`);
    const writes = cmds.some((c) => c[0] === 'set' || c[0] === 'fuzz' || c[0] === 'insert' || c[0] === 'delete');
    let device: Device;
    try {
      device = new Device(path, { readOnly: !writes });
      // Changing a mounted filesystem under its daemon would be undone (or worse) by the daemon: refuse.
      if (writes) {
        try {
          device.lock();
        } catch (e) {
          device.close();
          throw e;
        }
      }
    } catch (e) {
      if (e instanceof RmapfsError) throw new CliError(1, e.code, e.message);
      throw e;
    }
    try {
      const raw = new RawFs(device);
      for (const cmd of cmds) {
        try {
          if (cmd[0] !== 'hexdump') raw.requireRmapfs();
          runCommand(io, raw, cmd, args.flag('keep-crc'));
        } catch (e) {
          if (e instanceof CliError) throw e;
          if (e instanceof RmapfsError) throw new CliError(1, e.code, `${cmd.join(' ')}: ${e.message}`);
          throw e;
        }
      }
      return 0;
    } finally {
      device.close();
    }
  },
};

/**
 * Recognising what is already on a device, so mkfs never overwrites a
 * filesystem (or swap, or an encrypted volume) by accident.
 */
import { SB_MAGIC } from './superblock';

interface Signature {
  name: string;
  offset: number;
  bytes: Buffer;
}

const signatures: Signature[] = [
  { name: 'xfs', offset: 0, bytes: Buffer.from('XFSB', 'latin1') },
  { name: 'ext2/ext3/ext4', offset: 1080, bytes: Buffer.from([0x53, 0xef]) },
  { name: 'btrfs', offset: 65600, bytes: Buffer.from('_BHRfS_M', 'latin1') },
  { name: 'swap', offset: 4086, bytes: Buffer.from('SWAPSPACE2', 'latin1') },
  { name: 'LUKS', offset: 0, bytes: Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]) },
  { name: 'vfat', offset: 82, bytes: Buffer.from('FAT32', 'latin1') },
  { name: 'vfat', offset: 54, bytes: Buffer.from('FAT1', 'latin1') },
  { name: 'iso9660', offset: 32769, bytes: Buffer.from('CD001', 'latin1') },
];

/** Bytes from the start of a device that detectSignature needs. */
export const SIGNATURE_SPAN = 65536 + 4096;

/** The name of the filesystem (or other format) the first bytes of a device show, or null. */
export function detectSignature(head: Buffer): string | null {
  if (head.length >= 4 && head.readUInt32BE(0) === SB_MAGIC) return 'rmapfs';
  for (const s of signatures) {
    if (head.length >= s.offset + s.bytes.length && head.subarray(s.offset, s.offset + s.bytes.length).equals(s.bytes)) {
      return s.name;
    }
  }
  return null;
}

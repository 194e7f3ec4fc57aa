/**
 * Named fixed-offset fields of an on-disk structure. Each structure's codec
 * is a table of these, so the same table decodes it, encodes it, prints it
 * and lets `rmapfs db` set or fuzz any field by name.
 */
import { RmapfsError } from '../errors';
import { readI64, readU64, u64Text, writeI64, writeU64 } from '../io/meta-header';

/** i64: signed (two's complement), as inode times are. */
export type FieldType = 'u8' | 'u16' | 'u32' | 'u64' | 'i64' | 'uuid' | 'label';

export interface Field {
  name: string;
  offset: number;
  type: FieldType;
}

export const FIELD_SIZE: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, u64: 8, i64: 8, uuid: 16, label: 32 };

export type FieldValue = number | string;

export function readField(b: Buffer, base: number, f: Field): FieldValue {
  const at = base + f.offset;
  switch (f.type) {
    case 'u8': return b.readUInt8(at);
    case 'u16': return b.readUInt16BE(at);
    case 'u32': return b.readUInt32BE(at);
    case 'u64': {
      // Exact text above 2^53 (a damaged field), where a number would print rounded.
      const v = readU64(b, at);
      return Number.isSafeInteger(v) ? v : u64Text(b, at);
    }
    case 'i64': return readI64(b, at);
    case 'uuid': return formatUuid(b.subarray(at, at + 16));
    case 'label': {
      const raw = b.subarray(at, at + 32);
      const end = raw.indexOf(0);
      return raw.subarray(0, end < 0 ? 32 : end).toString('utf8');
    }
  }
}

export function writeField(b: Buffer, base: number, f: Field, value: FieldValue): void {
  const at = base + f.offset;
  const num = (): number => {
    const n = typeof value === 'number' ? value : Number(value);
    const max = f.type === 'u64' || f.type === 'i64' ? Number.MAX_SAFE_INTEGER : 2 ** (8 * FIELD_SIZE[f.type]) - 1;
    const min = f.type === 'i64' ? Number.MIN_SAFE_INTEGER : 0;
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new RmapfsError('EINVAL', `${f.name}: ${String(value)} is not a ${f.type}`);
    }
    return n;
  };
  switch (f.type) {
    case 'u8': b.writeUInt8(num(), at); break;
    case 'u16': b.writeUInt16BE(num(), at); break;
    case 'u32': b.writeUInt32BE(num(), at); break;
    case 'u64': writeU64(b, at, num()); break;
    case 'i64': writeI64(b, at, num()); break;
    case 'uuid': parseUuid(String(value)).copy(b, at); break;
    case 'label': {
      const bytes = Buffer.from(String(value), 'utf8');
      if (bytes.length > 32) throw new RmapfsError('EINVAL', `${f.name}: longer than 32 bytes`);
      b.fill(0, at, at + 32);
      bytes.copy(b, at);
      break;
    }
  }
}

export function readFields(b: Buffer, base: number, fields: readonly Field[]): Record<string, FieldValue> {
  const out: Record<string, FieldValue> = {};
  for (const f of fields) out[f.name] = readField(b, base, f);
  return out;
}

export function findField(fields: readonly Field[], name: string, what: string): Field {
  const f = fields.find((x) => x.name === name);
  if (f === undefined) {
    throw new RmapfsError('EINVAL', `${what} has no field '${name}' (fields: ${fields.map((x) => x.name).join(', ')})`);
  }
  return f;
}

export function formatUuid(b: Buffer): string {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function parseUuid(text: string): Buffer {
  const hex = text.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new RmapfsError('EINVAL', `'${text}' is not a UUID`);
  return Buffer.from(hex, 'hex');
}

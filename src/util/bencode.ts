// Strict bencode codec. Decoding rejects anything a canonical encoder would not produce
// (leading zeros, unsorted or duplicate keys, trailing bytes, excessive nesting) so that a
// malformed metainfo or wire message from a peer fails loudly instead of being half-read.
// Dictionary keys are compared as raw bytes and must be UTF-8 (they become JS strings): two keys
// that differ only in invalid bytes would decode to one, so they are refused instead. Whatever
// decode accepts, encode writes back byte for byte.

export type BValue = number | Buffer | BValue[] | BDict;
export interface BDict { [key: string]: BValue }

export class BencodeError extends Error {
  constructor(message: string, readonly offset: number) {
    super(`bencode: ${message} at byte ${offset}`);
    this.name = 'BencodeError';
  }
}

const MAX_DEPTH = 64;
/** fatal: invalid bytes throw instead of becoming U+FFFD; ignoreBOM: a leading BOM stays part of the key. */
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function encode(value: unknown): Buffer {
  const parts: Buffer[] = [];
  write(value, parts);
  return Buffer.concat(parts);
}

function write(v: unknown, out: Buffer[]): void {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new TypeError(`bencode: not an integer: ${v}`);
    out.push(Buffer.from(`i${v}e`));
  } else if (typeof v === 'bigint') {
    out.push(Buffer.from(`i${v}e`));
  } else if (typeof v === 'string') {
    const b = Buffer.from(v, 'utf8');
    out.push(Buffer.from(`${b.length}:`), b);
  } else if (Buffer.isBuffer(v) || v instanceof Uint8Array) {
    out.push(Buffer.from(`${v.length}:`), Buffer.from(v));
  } else if (Array.isArray(v)) {
    out.push(Buffer.from('l'));
    for (const x of v) write(x, out);
    out.push(Buffer.from('e'));
  } else if (v !== null && typeof v === 'object') {
    out.push(Buffer.from('d'));
    // Keys sort as raw bytes, as the spec requires.
    const keys = Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] !== undefined);
    keys.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const k of keys) {
      write(k, out);
      write((v as Record<string, unknown>)[k], out);
    }
    out.push(Buffer.from('e'));
  } else {
    throw new TypeError(`bencode: cannot encode ${v === null ? 'null' : typeof v}`);
  }
}

/** Decodes exactly one value spanning the whole buffer. */
export function decode(buf: Buffer): BValue {
  const d = new Decoder(buf);
  const v = d.value(0);
  if (d.pos !== buf.length) throw new BencodeError('trailing bytes', d.pos);
  return v;
}

/** Decodes one value at the start of buf and says where it ended (for messages with a tail). */
export function decodePrefix(buf: Buffer): { value: BValue; end: number } {
  const d = new Decoder(buf);
  const value = d.value(0);
  return { value, end: d.pos };
}

class Decoder {
  pos = 0;
  constructor(private readonly buf: Buffer) {}

  value(depth: number): BValue {
    if (depth > MAX_DEPTH) throw new BencodeError('nested too deeply', this.pos);
    const c = this.buf[this.pos];
    if (c === undefined) throw new BencodeError('unexpected end', this.pos);
    if (c === 0x69) return this.int(); // i
    if (c === 0x6c) { // l
      this.pos++;
      const list: BValue[] = [];
      while (this.peek() !== 0x65) list.push(this.value(depth + 1));
      this.pos++;
      return list;
    }
    if (c === 0x64) { // d
      this.pos++;
      const dict: BDict = Object.create(null);
      let prev: Buffer | null = null;
      while (this.peek() !== 0x65) {
        const at = this.pos;
        const key = this.bytes();
        if (prev && Buffer.compare(prev, key) >= 0) throw new BencodeError('dictionary keys not sorted or duplicated', at);
        prev = key;
        let name: string;
        try {
          name = utf8.decode(key);
        } catch {
          throw new BencodeError('dictionary key is not UTF-8', at);
        }
        dict[name] = this.value(depth + 1);
      }
      this.pos++;
      return dict;
    }
    if (c >= 0x30 && c <= 0x39) return this.bytes();
    throw new BencodeError(`unexpected byte 0x${c.toString(16)}`, this.pos);
  }

  private peek(): number {
    const c = this.buf[this.pos];
    if (c === undefined) throw new BencodeError('unexpected end', this.pos);
    return c;
  }

  private int(): number {
    const start = ++this.pos;
    const end = this.buf.indexOf(0x65, start);
    if (end < 0) throw new BencodeError('unterminated integer', start);
    const s = this.buf.toString('latin1', start, end);
    if (!/^(0|-?[1-9][0-9]*)$/.test(s)) throw new BencodeError(`bad integer "${s.slice(0, 24)}"`, start);
    const n = Number(s);
    if (!Number.isSafeInteger(n)) throw new BencodeError('integer out of range', start);
    this.pos = end + 1;
    return n;
  }

  private bytes(): Buffer {
    const start = this.pos;
    const colon = this.buf.indexOf(0x3a, start);
    if (colon < 0 || colon - start > 15) throw new BencodeError('bad string length', start);
    const s = this.buf.toString('latin1', start, colon);
    if (!/^(0|[1-9][0-9]*)$/.test(s)) throw new BencodeError(`bad string length "${s}"`, start);
    const len = Number(s);
    const from = colon + 1;
    if (from + len > this.buf.length) throw new BencodeError('string runs past the end', start);
    this.pos = from + len;
    return this.buf.subarray(from, from + len);
  }
}

/** Typed accessors for decoded dictionaries, with errors that name the field. */
export function isDict(v: BValue | undefined): v is BDict {
  return v !== undefined && typeof v === 'object' && !Buffer.isBuffer(v) && !Array.isArray(v);
}
export function getInt(d: BDict, key: string, ctx: string): number {
  const v = d[key];
  if (typeof v !== 'number') throw new Error(`${ctx}: "${key}" must be an integer`);
  return v;
}
export function getBytes(d: BDict, key: string, ctx: string): Buffer {
  const v = d[key];
  if (!Buffer.isBuffer(v)) throw new Error(`${ctx}: "${key}" must be a byte string`);
  return v;
}
export function getDict(d: BDict, key: string, ctx: string): BDict {
  const v = d[key];
  if (!isDict(v)) throw new Error(`${ctx}: "${key}" must be a dictionary`);
  return v;
}

// Parser of `git cat-file --batch` output: per object `<oid> <type> <size>\n<contents>\n`, or
// `<name> missing\n`. Linear in the input: each object's contents are copied once into a buffer
// allocated from the header's size (concatenating the pending bytes with every chunk made a
// 64 MiB blob take 20 s), and an object over the size limit is refused from its header, before
// any of it is held in memory.

export interface BatchObject { oid: string; type: string; data: Buffer }

/** An object larger than the caller allows (a hostile or broken peer's blob). */
export class ObjectTooLargeError extends Error {
  constructor(readonly oid: string, readonly size: number, readonly limit: number) {
    super(`object ${oid} is ${size} bytes, more than the ${limit} bytes an entry or record may have`);
  }
}

export class MissingObjectError extends Error {}

const MAX_HEADER = 1024;

export class BatchParser {
  private header: Buffer[] = [];
  private headerLength = 0;
  private cur?: { oid: string; type: string; data: Buffer; filled: number };
  /** Contents complete, the terminating LF not seen yet. */
  private done?: BatchObject;

  constructor(private readonly onObject: (o: BatchObject) => void, private readonly maxSize = Number.POSITIVE_INFINITY) {}

  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.cur) {
        const c = this.cur;
        const n = Math.min(c.data.length - c.filled, chunk.length - pos);
        chunk.copy(c.data, c.filled, pos, pos + n);
        c.filled += n;
        pos += n;
        if (c.filled === c.data.length) {
          this.done = { oid: c.oid, type: c.type, data: c.data };
          this.cur = undefined;
        }
        continue;
      }
      if (this.done) {
        if (chunk[pos] !== 10) throw new Error(`git cat-file --batch: no newline after object ${this.done.oid}`);
        pos++;
        const o = this.done;
        this.done = undefined;
        this.onObject(o);
        continue;
      }
      const nl = chunk.indexOf(10, pos);
      if (nl < 0) {
        this.header.push(chunk.subarray(pos));
        this.headerLength += chunk.length - pos;
        if (this.headerLength > MAX_HEADER) throw new Error('git cat-file --batch: header line too long');
        return;
      }
      const line = (this.header.length ? Buffer.concat([...this.header, chunk.subarray(pos, nl)]) : chunk.subarray(pos, nl)).toString('latin1');
      this.header = [];
      this.headerLength = 0;
      pos = nl + 1;
      this.begin(line);
    }
  }

  /** The output ended: anything half-read is an error. */
  end(): void {
    if (this.cur || this.done || this.headerLength) throw new Error('git cat-file --batch: output ended inside an object');
  }

  private begin(line: string): void {
    const [oid = '', type = '', sizeText = ''] = line.split(' ');
    if (type === 'missing') throw new MissingObjectError(`object ${oid} is missing`);
    const size = Number(sizeText);
    if (!oid || !type || !/^\d+$/.test(sizeText) || !Number.isSafeInteger(size)) throw new Error(`git cat-file --batch: unexpected header ${JSON.stringify(line.slice(0, 100))}`);
    if (size > this.maxSize) throw new ObjectTooLargeError(oid, size, this.maxSize);
    const data = Buffer.allocUnsafe(size);
    if (size === 0) this.done = { oid, type, data };
    else this.cur = { oid, type, data, filled: 0 };
  }
}

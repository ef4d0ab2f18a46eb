// A BitTorrent bitfield: bit i of the piece list, most significant bit of byte 0 first (BEP 3),
// spare bits at the end always zero so the bytes can go on the wire and to disk as they are.
export class Bitfield {
  readonly bytes: Uint8Array;
  private ones = 0;

  constructor(readonly size: number, from?: Uint8Array) {
    this.bytes = new Uint8Array(Math.ceil(size / 8));
    if (from) {
      // Copy only the bits that exist; a longer or dirty input cannot set spare bits.
      for (let i = 0; i < size; i++) if (from[i >> 3]! & (0x80 >> (i & 7))) this.set(i);
    }
  }

  get(i: number): boolean {
    return i >= 0 && i < this.size && (this.bytes[i >> 3]! & (0x80 >> (i & 7))) !== 0;
  }

  set(i: number): void {
    if (i < 0 || i >= this.size || this.get(i)) return;
    this.bytes[i >> 3]! |= 0x80 >> (i & 7);
    this.ones++;
  }

  clear(i: number): void {
    if (!this.get(i)) return;
    this.bytes[i >> 3]! &= ~(0x80 >> (i & 7));
    this.ones--;
  }

  count(): number {
    return this.ones;
  }

  full(): boolean {
    return this.ones === this.size;
  }

  /** True when every piece in [first, last] is set. */
  hasRange(first: number, last: number): boolean {
    for (let i = first; i <= last; i++) if (!this.get(i)) return false;
    return true;
  }
}

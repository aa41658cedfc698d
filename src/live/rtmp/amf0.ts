import { rtmpError } from './errors.ts';

// AMF0 (Adobe's Action Message Format, version 0), the encoding of RTMP commands and of the
// onMetaData data message (S3.9). Written here rather than taken from npm: the registry's AMF
// packages (amf 0.1.0, libamf, @astronautlabs/amf 0.0.x, bytearray-node) are unmaintained or
// pre-1.0, and none bounds nesting or checks a claimed length against the bytes present.
//
// Decoding trusts nothing: every length is checked against the bytes actually there before
// anything is read (a string "of 4 GiB" in a 30-byte message fails at once, allocating
// nothing), nesting is bounded, object keys land in prototype-less objects (a key
// "__proto__" is an ordinary key), and markers with no use in ingest (reference, AMF3
// switch, movie clip, record set) are refused rather than guessed.

export type Amf0Value = number | boolean | string | null | undefined | Amf0Object | Amf0Value[] | Amf0EcmaArray | Amf0Date;
export interface Amf0Object {
  [key: string]: Amf0Value;
}

/** An ECMA (associative) array: encoded with marker 8, decoded as its properties. */
export class Amf0EcmaArray {
  constructor(readonly props: Amf0Object) {}
}

/** An AMF0 date: milliseconds since the epoch and a time zone offset in minutes (unused, 0). */
export class Amf0Date {
  constructor(
    readonly ms: number,
    readonly timezone = 0,
  ) {}
}

const M = {
  number: 0x00,
  boolean: 0x01,
  string: 0x02,
  object: 0x03,
  null: 0x05,
  undefined: 0x06,
  reference: 0x07,
  ecmaArray: 0x08,
  objectEnd: 0x09,
  strictArray: 0x0a,
  date: 0x0b,
  longString: 0x0c,
  unsupported: 0x0d,
  xmlDocument: 0x0f,
  typedObject: 0x10,
} as const;

// ---------- decoding ----------

/** A cursor over one message's bytes; every read checks the bytes are there. */
class Reader {
  pos = 0;
  constructor(
    readonly buf: Buffer,
    readonly maxDepth: number,
  ) {}

  need(n: number, what: string) {
    if (n > this.buf.length - this.pos) throw rtmpError('amf_invalid', `AMF0 ${what} claims ${n} bytes, ${this.buf.length - this.pos} left`);
  }
  /** Reads an `n`-byte field at the cursor and moves past it. */
  private fixed<T>(n: number, what: string, read: (at: number) => T): T {
    this.need(n, what);
    const v = read(this.pos);
    this.pos += n;
    return v;
  }
  u8 = (what: string) => this.fixed(1, what, (at) => this.buf[at]);
  u16 = (what: string) => this.fixed(2, what, (at) => this.buf.readUInt16BE(at));
  i16 = (what: string) => this.fixed(2, what, (at) => this.buf.readInt16BE(at));
  u32 = (what: string) => this.fixed(4, what, (at) => this.buf.readUInt32BE(at));
  f64 = (what: string) => this.fixed(8, what, (at) => this.buf.readDoubleBE(at));
  utf8 = (n: number, what: string) => this.fixed(n, what, (at) => this.buf.toString('utf8', at, at + n));
}

function readValue(r: Reader, depth: number): Amf0Value {
  const marker = r.u8('marker');
  switch (marker) {
    case M.number:
      return r.f64('number');
    case M.boolean:
      return r.u8('boolean') !== 0;
    case M.string:
      return r.utf8(r.u16('string length'), 'string');
    case M.longString:
    case M.xmlDocument:
      return r.utf8(r.u32('long string length'), 'long string');
    case M.null:
      return null;
    case M.undefined:
    case M.unsupported:
      return undefined;
    case M.object:
      return readProps(r, depth + 1);
    case M.typedObject:
      r.utf8(r.u16('class name length'), 'class name');
      return readProps(r, depth + 1);
    case M.ecmaArray:
      // The count is only a hint (ffmpeg writes it, others write 0): read up to the end marker.
      r.u32('ECMA array count');
      return new Amf0EcmaArray(readProps(r, depth + 1));
    case M.strictArray: {
      const count = r.u32('strict array count');
      // Each value takes at least its marker byte: a count past the bytes left is a lie.
      r.need(count, 'strict array');
      if (depth + 1 > r.maxDepth) throw rtmpError('amf_invalid', `AMF0 nesting deeper than ${r.maxDepth}`);
      const out: Amf0Value[] = [];
      for (let i = 0; i < count; i++) out.push(readValue(r, depth + 1));
      return out;
    }
    case M.date: {
      const ms = r.f64('date');
      return new Amf0Date(ms, r.i16('date time zone'));
    }
    case M.objectEnd:
      throw rtmpError('amf_invalid', 'AMF0 object end marker outside an object');
    default:
      throw rtmpError('amf_invalid', `AMF0 marker 0x${marker.toString(16)} is not accepted`);
  }
}

function readProps(r: Reader, depth: number): Amf0Object {
  if (depth > r.maxDepth) throw rtmpError('amf_invalid', `AMF0 nesting deeper than ${r.maxDepth}`);
  const obj: Amf0Object = Object.create(null);
  for (;;) {
    const key = r.utf8(r.u16('key length'), 'key');
    if (key === '') {
      // An empty key followed by the end marker closes the object.
      if (r.u8('object end') !== M.objectEnd) throw rtmpError('amf_invalid', 'AMF0 empty key without object end');
      return obj;
    }
    obj[key] = readValue(r, depth);
  }
}

/** Every value in `buf` (a command or data message body), in order. */
export function decodeAmf0(buf: Buffer, maxDepth: number): Amf0Value[] {
  const r = new Reader(buf, maxDepth);
  const out: Amf0Value[] = [];
  while (r.pos < buf.length) out.push(readValue(r, 0));
  return out;
}

/** The first value of `buf` and the number of bytes it takes (to strip @setDataFrame). */
export function decodeFirstAmf0(buf: Buffer, maxDepth: number): { value: Amf0Value; length: number } {
  const r = new Reader(buf, maxDepth);
  const value = readValue(r, 0);
  return { value, length: r.pos };
}

// ---------- encoding (our own replies: small, trusted values) ----------

function writeValue(v: Amf0Value, out: Buffer[]): void {
  if (typeof v === 'number') {
    const b = Buffer.alloc(9);
    b[0] = M.number;
    b.writeDoubleBE(v, 1);
    out.push(b);
  } else if (typeof v === 'boolean') {
    out.push(Buffer.from([M.boolean, v ? 1 : 0]));
  } else if (typeof v === 'string') {
    const s = Buffer.from(v, 'utf8');
    const long = s.length > 0xffff;
    const h = Buffer.alloc(long ? 5 : 3);
    h[0] = long ? M.longString : M.string;
    if (long) h.writeUInt32BE(s.length, 1);
    else h.writeUInt16BE(s.length, 1);
    out.push(h, s);
  } else if (v === null) {
    out.push(Buffer.from([M.null]));
  } else if (v === undefined) {
    out.push(Buffer.from([M.undefined]));
  } else if (Array.isArray(v)) {
    const h = Buffer.alloc(5);
    h[0] = M.strictArray;
    h.writeUInt32BE(v.length, 1);
    out.push(h);
    for (const x of v) writeValue(x, out);
  } else if (v instanceof Amf0Date) {
    const b = Buffer.alloc(11);
    b[0] = M.date;
    b.writeDoubleBE(v.ms, 1);
    b.writeInt16BE(v.timezone, 9);
    out.push(b);
  } else if (v instanceof Amf0EcmaArray) {
    const h = Buffer.alloc(5);
    h[0] = M.ecmaArray;
    h.writeUInt32BE(Object.keys(v.props).length, 1);
    out.push(h);
    writeProps(v.props, out);
  } else {
    out.push(Buffer.from([M.object]));
    writeProps(v, out);
  }
}

function writeProps(obj: Amf0Object, out: Buffer[]) {
  for (const [k, x] of Object.entries(obj)) {
    const key = Buffer.from(k, 'utf8');
    if (key.length > 0xffff) throw new RangeError('AMF0 key longer than 65535 bytes');
    const h = Buffer.alloc(2);
    h.writeUInt16BE(key.length, 0);
    out.push(h, key);
    writeValue(x, out);
  }
  out.push(Buffer.from([0, 0, M.objectEnd]));
}

/** `values` encoded one after the other, as a command or data message body. */
export function encodeAmf0(...values: Amf0Value[]): Buffer {
  const out: Buffer[] = [];
  for (const v of values) writeValue(v, out);
  return Buffer.concat(out);
}

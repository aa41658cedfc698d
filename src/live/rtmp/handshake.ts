import { rtmpError } from './errors.ts';

// The RTMP handshake, server side (S3.9; RTMP 1.0 specification §5.2). The client sends C0
// (one byte, version 3) and C1 (1536 bytes: time, zero, random); the server answers S0, S1
// (its own time, zero, random) and S2 (an echo of C1); the client closes with C2 (an echo of
// S1). This is the "simple" handshake. ffmpeg and OBS also accept it: they check the server's
// digest only when S1's bytes 4–7 (the version field) are non-zero, which ours never are, and
// only for playing. S2 is C1 echoed whole, which both clients compare byte for byte (librtmp
// warns otherwise); C2's content is not checked (clients that tried the digest handshake send
// a digest there, and it proves nothing to us).
//
// At most 1 + 2 × 1536 bytes are held, whatever the peer sends; any byte after C2 belongs to
// the chunk stream and is handed back.

export const HANDSHAKE_SIZE = 1536;
const RTMP_VERSION = 3;

export type HandshakeStep = { reply?: Buffer; done: false } | { reply?: Buffer; done: true; rest: Buffer };

export class ServerHandshake {
  private held: Buffer = Buffer.alloc(0);
  private phase: 'c0c1' | 'c2' | 'done' = 'c0c1';

  /** `random` gives S1's 1528 random bytes (crypto.randomBytes in production). */
  constructor(private readonly random: (n: number) => Buffer) {}

  /** Feeds bytes from the socket; returns what to send back and, once C2 is in, the bytes past it. */
  push(data: Buffer): HandshakeStep {
    if (this.phase === 'done') throw new Error('handshake already done');
    this.held = this.held.length ? Buffer.concat([this.held, data]) : data;
    let reply: Buffer | undefined;
    if (this.phase === 'c0c1') {
      // C0 is checked on its own byte, so garbage (an HTTP request, a TLS hello) is refused at once.
      if (this.held.length >= 1 && this.held[0] !== RTMP_VERSION) {
        throw rtmpError('handshake_bad_version', `C0 version 0x${this.held[0].toString(16).padStart(2, '0')}, expected 0x03`);
      }
      if (this.held.length < 1 + HANDSHAKE_SIZE) return { done: false };
      const c1 = this.held.subarray(1, 1 + HANDSHAKE_SIZE);
      const s1 = Buffer.alloc(HANDSHAKE_SIZE);
      // S1: time 0 (the specification allows it: the field is only an epoch for this connection),
      // version field zero (so clients do the simple handshake), 1528 random bytes.
      this.random(HANDSHAKE_SIZE - 8).copy(s1, 8);
      reply = Buffer.concat([Buffer.from([RTMP_VERSION]), s1, c1]);
      this.held = this.held.subarray(1 + HANDSHAKE_SIZE);
      this.phase = 'c2';
    }
    if (this.held.length < HANDSHAKE_SIZE) return { reply, done: false };
    const rest = Buffer.from(this.held.subarray(HANDSHAKE_SIZE));
    this.held = Buffer.alloc(0);
    this.phase = 'done';
    return { reply, done: true, rest };
  }
}

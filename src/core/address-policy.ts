import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import os from 'node:os';
import ipaddr from 'ipaddr.js';
import { AppError } from './errors.ts';

/*
 * # Which addresses the origin calls on a client's word
 *
 * Terminals register addresses that the origin later calls: a `serveUrl` (the holdings
 * spot check fetches a piece there) and a push address (scheduled orders are POSTed
 * there). Without a rule the origin would be a proxy into its own machine and network:
 * a terminal could point it at 127.0.0.1:5432, a router's admin page or the cloud's
 * metadata service. Every such address follows this one policy, checked twice:
 *
 *   - when it is registered (`checkUrl`: 400 `address_not_allowed`, saying why), and
 *   - when the origin connects (`resolveChecked`, used by `peerConnector`): a name is
 *     resolved and every address it resolves to is checked *then*, and the connection
 *     goes to the checked address, so a name that later resolves elsewhere gains nothing.
 *
 * Never allowed: link-local (169.254/16, fe80::/10), cloud metadata addresses and names,
 * unspecified, multicast and broadcast addresses, and the origin's own listening
 * address (host and port). `PEER_ADDRESSES` decides the rest:
 *
 *   - `public`: public unicast addresses only;
 *   - `private` (default): also private and other non-public ranges (RFC 1918, 100.64/10,
 *     fc00::/7, documentation and reserved ranges) — a LAN deployment works as is;
 *   - `any`: also loopback (127/8, ::1) and the origin machine's own addresses — one
 *     machine running origin and agents (tests, the README's quick start).
 *
 * Addresses are compared in canonical form: an IPv4 address inside IPv6 (::ffff:a.b.c.d,
 * ::a.b.c.d, 64:ff9b::a.b.c.d) is judged as that IPv4 address, and URLs are parsed with
 * WHATWG rules, which turn decimal, hex and octal IPv4 forms into dotted decimal.
 */

export const PEER_ADDRESS_MODES = ['public', 'private', 'any'] as const;
export type PeerAddressMode = (typeof PEER_ADDRESS_MODES)[number];

/** What an address is, as far as the policy cares. */
export type AddressClass = 'public' | 'private' | 'loopback' | 'own-machine' | 'link-local' | 'metadata' | 'unspecified' | 'multicast' | 'broadcast';

const ALLOWED: Record<PeerAddressMode, readonly AddressClass[]> = {
  public: ['public'],
  private: ['public', 'private'],
  any: ['public', 'private', 'loopback', 'own-machine'],
};

const WHY: Record<AddressClass, string> = {
  public: 'is public',
  private: 'is in a private or otherwise non-public range',
  loopback: 'is a loopback address (the origin’s own machine)',
  'own-machine': 'is an address of the origin’s own machine',
  'link-local': 'is link-local',
  metadata: 'is a cloud metadata service',
  unspecified: 'is the unspecified address',
  multicast: 'is a multicast address',
  broadcast: 'is the broadcast address',
};

/** Cloud metadata services (AWS, GCP, Azure, Alibaba, Oracle): refused whatever the mode. */
const METADATA_IPS = new Set(['169.254.169.254', '169.254.170.2', '100.100.100.200', '168.63.129.16', '192.0.0.192', 'fd00:ec2::254']);
const METADATA_NAMES = new Set(['metadata', 'metadata.google.internal', 'metadata.goog', 'instance-data', 'instance-data.ec2.internal', 'metadata.azure.internal']);

type Ip = ipaddr.IPv4 | ipaddr.IPv6;

/** The policy's own refusals (a class, so callers can tell them from codes a remote sent). */
export class AddressRefused extends AppError {}

/** The IPv4 address carried inside an IPv6 one (mapped, translated, compatible, NAT64), if any. */
function embeddedIpv4(v6: ipaddr.IPv6): ipaddr.IPv4 | null {
  const p = v6.parts;
  const tail = () => new ipaddr.IPv4([p[6] >> 8, p[6] & 0xff, p[7] >> 8, p[7] & 0xff]);
  const range = v6.range();
  if (range === 'ipv4Mapped' || range === 'rfc6145') return tail();
  if (p[0] === 0x64 && p[1] === 0xff9b && p.slice(2, 6).every((x) => x === 0)) return tail(); // 64:ff9b::/96
  if (p.slice(0, 6).every((x) => x === 0) && (p[6] !== 0 || p[7] > 1)) return tail(); // ::a.b.c.d (deprecated "compatible")
  return null;
}

function parseIp(ip: string): Ip | null {
  const bare = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip;
  // isIP accepts only canonical dotted-decimal IPv4 and valid IPv6: the URL parser has already
  // turned other IPv4 spellings into dotted decimal, and anything else is a name to resolve.
  if (!isIP(bare)) return null;
  const addr = ipaddr.parse(bare);
  if (addr.kind() === 'ipv6') {
    const v4 = embeddedIpv4(addr as ipaddr.IPv6);
    if (v4) return v4;
  }
  return addr;
}

/** An address in the form used for comparisons (IPv4 inside IPv6 as IPv4; IPv6 compressed). */
export function canonicalIp(ip: string): string | null {
  return parseIp(ip)?.toString() ?? null;
}

/** What an IP address literal is; null if `ip` is not one. */
export function classifyIp(ip: string): AddressClass | null {
  const addr = parseIp(ip);
  if (!addr) return null;
  if (METADATA_IPS.has(addr.toString())) return 'metadata';
  switch (addr.range()) {
    case 'unicast':
      return 'public';
    case 'unspecified':
      return 'unspecified';
    case 'broadcast':
      return 'broadcast';
    case 'multicast':
      return 'multicast';
    case 'linkLocal':
      return 'link-local';
    case 'loopback':
      return 'loopback';
    default:
      // RFC 1918, 100.64/10, fc00::/7 and every other special-purpose range: not public.
      return 'private';
  }
}

export interface AddressPolicyOptions {
  mode: PeerAddressMode;
  /** A host name's addresses now; default the system resolver (tests substitute names). */
  resolve?: (host: string) => Promise<string[]>;
  /** This machine's own addresses; default every interface's. */
  localAddresses?: () => string[];
}

const systemResolve = async (host: string) => (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
const interfaceAddresses = () =>
  Object.values(os.networkInterfaces())
    .flat()
    .map((i) => i?.address)
    .filter((a): a is string => !!a);

export class AddressPolicy {
  readonly mode: PeerAddressMode;
  private readonly resolve: (host: string) => Promise<string[]>;
  private readonly localAddresses: () => string[];
  /** Where the origin itself listens: null ips means every address of this machine (0.0.0.0, ::). */
  private own: { port: number; ips: Set<string> | null } | null = null;

  constructor(opts: AddressPolicyOptions) {
    this.mode = opts.mode;
    this.resolve = opts.resolve ?? systemResolve;
    this.localAddresses = opts.localAddresses ?? interfaceAddresses;
  }

  /** Tells the policy where the origin listens, once it does: that address is never called. */
  async listeningAt(host: string, port: number): Promise<void> {
    const bare = host.replace(/^\[|\]$/g, '');
    if (bare === '' || bare === '0.0.0.0' || bare === '::') {
      this.own = { port, ips: null };
      return;
    }
    const ips = isIP(bare) ? [bare] : await this.resolve(bare).catch(() => []);
    this.own = { port, ips: new Set(ips.map((ip) => canonicalIp(ip)).filter((ip): ip is string => !!ip)) };
  }

  /** Why the origin may not connect to `ip`:`port`; null if it may. */
  refusal(ip: string, port: number): { address: string; class: AddressClass | 'origin'; reason: string } | null {
    const canonical = canonicalIp(ip);
    let cls = classifyIp(ip);
    if (!canonical || !cls) return { address: ip, class: 'unspecified', reason: 'is not an IP address' };
    if (this.isOwnListener(canonical, cls, port)) return { address: canonical, class: 'origin', reason: 'is the origin’s own listening address' };
    if ((cls === 'public' || cls === 'private') && this.localCanonical().has(canonical)) cls = 'own-machine';
    if (ALLOWED[this.mode].includes(cls)) return null;
    return { address: canonical, class: cls, reason: WHY[cls] };
  }

  /**
   * Checks an address a client registers (`what` names it in the message, e.g. "serveUrl"):
   * an http(s) URL whose host — a literal, or every address its name resolves to now —
   * the origin may call. A name that does not resolve now is accepted: it is checked at
   * every call. Throws 400 `address_not_allowed`.
   */
  async checkUrl(url: string, what: string): Promise<void> {
    const u = new URL(url); // callers have checked it parses
    const host = hostOf(u);
    const port = portOf(u);
    if (METADATA_NAMES.has(host)) throw this.refused(what, url, { address: host, class: 'metadata', reason: WHY.metadata });
    if (classifyIp(host)) {
      const r = this.refusal(host, port);
      if (r) throw this.refused(what, url, r);
      return;
    }
    let ips: string[];
    try {
      ips = await this.resolve(host);
    } catch {
      return;
    }
    for (const ip of ips) {
      const r = this.refusal(ip, port);
      if (r) throw this.refused(what, url, r, host);
    }
  }

  /**
   * The address to connect to for `host`:`port`, resolved now and checked: every address
   * the name resolves to must be allowed (a name that mixes allowed and forbidden ones is
   * refused whole). Throws `address_not_allowed` (the caller turns it into its own refusal).
   */
  async resolveChecked(host: string, port: number): Promise<string> {
    const name = normalizeName(host);
    if (METADATA_NAMES.has(name)) throw this.refused('address', host, { address: name, class: 'metadata', reason: WHY.metadata });
    const ips = classifyIp(name) ? [name] : await this.resolve(name);
    if (ips.length === 0) throw new AddressRefused('address_unresolved', `${host} has no address.`, 502);
    for (const ip of ips) {
      const r = this.refusal(ip, port);
      if (r) throw this.refused('address', `${host}:${port}`, r, classifyIp(name) ? undefined : name);
    }
    return ips[0].replace(/^\[|\]$/g, '');
  }

  private isOwnListener(canonical: string, cls: AddressClass, port: number): boolean {
    if (!this.own || this.own.port !== port) return false;
    if (this.own.ips) return this.own.ips.has(canonical);
    return cls === 'loopback' || cls === 'unspecified' || this.localCanonical().has(canonical);
  }

  private localCanonical(): Set<string> {
    return new Set(this.localAddresses().map((a) => canonicalIp(a)).filter((a): a is string => !!a));
  }

  private refused(what: string, url: string, r: { address: string; reason: string; class: string }, name?: string): AppError {
    const subject = name ? `${name} resolves to ${r.address}, which` : r.address;
    const needs = r.class === 'private' ? 'private' : r.class === 'loopback' || r.class === 'own-machine' ? 'any' : null;
    const hint = needs
      ? ` This origin calls ${this.mode === 'public' ? 'public addresses only' : 'public and private-range addresses, not its own machine'} (PEER_ADDRESSES=${this.mode}); its operator can allow this with PEER_ADDRESSES=${needs}.`
      : ' The origin never calls link-local, metadata, unspecified, multicast or broadcast addresses, nor itself.';
    return new AddressRefused('address_not_allowed', `The ${what} ${url} is not allowed: ${subject} ${r.reason}.${hint}`, 400, { address: r.address, class: r.class });
  }
}

function normalizeName(host: string): string {
  return host.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();
}

function hostOf(u: URL): string {
  return normalizeName(u.hostname);
}

function portOf(u: URL): number {
  return u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
}

import type { KeyObject } from 'node:crypto';
import { Agent, request } from 'undici';
import { AddressRefused, type AddressPolicy } from '../core/address-policy.ts';
import { badRequest } from '../core/errors.ts';
import { peerConnector } from '../core/peer-connect.ts';
import { encodeToken } from '../core/signed-token.ts';
import type { Db } from '../db/connection.ts';

// Push to a registered address (S0.4): a terminal registers where the origin POSTs its
// delivery orders, each signed with the origin key. The addresses are kept in
// `schedule_push_addresses` and in memory; every connection is resolved and checked by
// the address policy as it opens (issue 10 #8).

/** Signed order for push to a registered address: `encodeToken({typ, ...order})` with the origin key. */
export const ORDER_TOKEN_TYPE = 'cascade-delivery-order';

export class PushAddresses {
  private readonly urls = new Map<string, string>();
  private readonly dispatcher: Agent;

  constructor(private readonly deps: { db: Db; peers: AddressPolicy; originKey: KeyObject; now: () => number }) {
    this.dispatcher = new Agent({ connect: peerConnector(deps.peers) });
  }

  /** Reads the registered addresses (at start). */
  async load(): Promise<void> {
    const rows = await this.deps.db.selectFrom('schedule_push_addresses').select(['terminal_id', 'url']).execute();
    for (const r of rows) this.urls.set(r.terminal_id, r.url);
  }

  get(terminalId: string): string | undefined {
    return this.urls.get(terminalId);
  }

  has(terminalId: string): boolean {
    return this.urls.has(terminalId);
  }

  /** Registers (or with null, removes) the address orders are POSTed to: `invalid_push_address`, or the policy's refusal. */
  async set(terminalId: string, url: string | null): Promise<void> {
    if (url === null) {
      await this.deps.db.deleteFrom('schedule_push_addresses').where('terminal_id', '=', terminalId).execute();
      this.urls.delete(terminalId);
      return;
    }
    checkPushUrl(url);
    await this.deps.peers.checkUrl(url, 'push address');
    const updated_at = new Date(this.deps.now());
    await this.deps.db
      .insertInto('schedule_push_addresses')
      .values({ terminal_id: terminalId, url, updated_at })
      .onConflict((oc) => oc.column('terminal_id').doUpdateSet({ url, updated_at }))
      .execute();
    this.urls.set(terminalId, url);
  }

  /** POSTs the signed order; resolves null when the terminal took it, else why not (`address_not_allowed`, `terminal_unreachable`) and the error. */
  async send(url: string, order: object): Promise<{ reason: 'address_not_allowed' | 'terminal_unreachable'; err: Error } | null> {
    try {
      const token = encodeToken({ typ: ORDER_TOKEN_TYPE, ...order }, this.deps.originKey);
      const res = await request(url, {
        dispatcher: this.dispatcher,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token }),
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      });
      await res.body.dump();
      if (res.statusCode >= 300) throw new Error(`HTTP ${res.statusCode}`);
      return null;
    } catch (err) {
      const refused = err instanceof AddressRefused && err.code === 'address_not_allowed';
      return { reason: refused ? 'address_not_allowed' : 'terminal_unreachable', err: err as Error };
    }
  }

  close(): Promise<void> {
    return this.dispatcher.close();
  }
}

function checkPushUrl(url: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw badRequest('invalid_push_address', 'The push address must be an absolute http(s) URL.', { field: 'url' });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw badRequest('invalid_push_address', 'The push address must be an http(s) URL.', { field: 'url' });
}

import { isIP } from 'node:net';
import { buildConnector } from 'undici';
import type { AddressPolicy } from './address-policy.ts';

// An undici connector for every connection the origin opens to an address a client
// registered (holdings spot checks, pushed orders): it resolves the host now, checks
// each address with the policy, and connects to the checked address itself — no second
// look-up between check and connection for a name to answer differently. TLS still
// verifies the certificate against the name (servername).

export function peerConnector(policy: AddressPolicy, opts: buildConnector.BuildOptions = {}): buildConnector.connector {
  const connect = buildConnector(opts);
  return (o, callback) => {
    const port = Number(o.port) || (o.protocol === 'https:' ? 443 : 80);
    policy.resolveChecked(o.hostname, port).then(
      (ip) => connect({ ...o, hostname: ip, servername: o.servername ?? (isIP(o.hostname) ? undefined : o.hostname) }, callback),
      (err: Error) => callback(err, null),
    );
  };
}

import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AppError } from '../core/errors.ts';
import { Api } from '../core/http-client.ts';

// The CLI keeps its sign-in and its device identity in one directory:
// $CASCADE_HOME, or ~/.config/cascade. Files are written mode 0600.

export interface Profile {
  origin: string;
  token?: string;
  username?: string;
  /** The origin's Ed25519 public key, pinned at login: manifests and grants are checked against it. */
  originKey?: string;
}

export function cascadeHome(): string {
  return process.env.CASCADE_HOME || path.join(os.homedir(), '.config', 'cascade');
}

const profileFile = () => path.join(cascadeHome(), 'profile.json');

/**
 * The origin a command talks to (issue 12 #2): `--origin`, else $CASCADE_ORIGIN, else the one
 * signed in to, else http://127.0.0.1:8080. Without a trailing slash.
 */
export function chooseOrigin(flag?: string): string {
  return (flag || process.env.CASCADE_ORIGIN || readProfile().origin || 'http://127.0.0.1:8080').replace(/\/+$/, '');
}

/** The sign-in kept for `origin`, or a not_signed_in refusal naming the origin (a token is never sent to another origin). */
export function signedInTo(origin: string): Profile & { token: string; originKey: string } {
  const p = readProfile();
  if (!p.token || !p.originKey) throw new AppError('not_signed_in', `Not signed in: run \`cascade login --origin ${origin}\` first.`, 401);
  if (p.origin.replace(/\/+$/, '') !== origin) {
    throw new AppError('not_signed_in', `Signed in to ${p.origin}, not ${origin}: run \`cascade login --origin ${origin}\` (or give --origin ${p.origin}).`, 401);
  }
  return p as Profile & { token: string; originKey: string };
}

export function readProfile(): Profile {
  if (!existsSync(profileFile())) return { origin: '' };
  return JSON.parse(readFileSync(profileFile(), 'utf8')) as Profile;
}

export function writeProfile(p: Profile) {
  mkdirSync(cascadeHome(), { recursive: true, mode: 0o700 });
  writeFileSync(profileFile(), JSON.stringify(p, null, 2) + '\n', { mode: 0o600 });
}

/** A client of the profile's origin, signed in with its token (or CASCADE_TOKEN); overrides from command options. */
export function apiFromProfile(overrides: { origin?: string; token?: string } = {}): Api {
  const p: Profile = readProfile();
  const origin = chooseOrigin(overrides.origin);
  const kept = p.origin.replace(/\/+$/, '') === origin ? p.token : undefined;
  return new Api(origin, overrides.token ?? process.env.CASCADE_TOKEN ?? kept);
}

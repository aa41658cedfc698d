import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
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

export function defaultOrigin(): string {
  return process.env.CASCADE_ORIGIN || 'http://127.0.0.1:8080';
}

export function readProfile(): Profile {
  if (!existsSync(profileFile())) return { origin: defaultOrigin() };
  return JSON.parse(readFileSync(profileFile(), 'utf8')) as Profile;
}

export function writeProfile(p: Profile) {
  mkdirSync(cascadeHome(), { recursive: true, mode: 0o700 });
  writeFileSync(profileFile(), JSON.stringify(p, null, 2) + '\n', { mode: 0o600 });
}

/** A client of the profile's origin, signed in with its token (or CASCADE_TOKEN); overrides from command options. */
export function apiFromProfile(overrides: { origin?: string; token?: string } = {}): Api {
  const p: Profile = readProfile();
  return new Api((overrides.origin ?? p.origin).replace(/\/$/, ''), overrides.token ?? process.env.CASCADE_TOKEN ?? p.token);
}

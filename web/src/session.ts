import { signal } from '@preact/signals';
import { navigate, currentPath } from './router.ts';

// Who is signed in: the account session token from POST /auth/login, kept in localStorage
// so a reload stays signed in. Nothing else about the user is trusted from storage: the
// roles shown come from GET /auth/me at start.

export interface Session {
  token: string;
  userId: string;
  username: string;
  roles: string[];
}

const KEY = 'cascade.session';

function load(): Session | null {
  try {
    const s = JSON.parse(localStorage.getItem(KEY) ?? 'null');
    return s && typeof s.token === 'string' ? s : null;
  } catch {
    return null;
  }
}

export const session = signal<Session | null>(load());
/** Why the user was sent to the sign-in page, shown there once. */
export const signInReason = signal<string | null>(null);

export function setSession(s: Session | null): void {
  session.value = s;
  if (s) localStorage.setItem(KEY, JSON.stringify(s));
  else localStorage.removeItem(KEY);
}

export function hasRole(role: string): boolean {
  return session.value?.roles.includes(role) ?? false;
}

/** The session is no longer valid: sign in again, then come back to where the user was. */
export function signOutExpired(): void {
  const back = currentPath();
  setSession(null);
  signInReason.value = 'Your session has ended. Sign in again to continue.';
  if (!back.startsWith('/signin')) navigate(`/signin?next=${encodeURIComponent(back)}`);
}

// What counts as an e-mail address here (S3.8): a members' contact address and a mail's
// recipients. Plausible, not proven: a local part of printable characters without spaces,
// quotes, brackets or separators, "@", and a domain of dot-separated DNS labels with at
// least one dot. At most 254 characters in all (RFC 5321's path limit), 64 before the "@".

export const MAX_EMAIL_LENGTH = 254;

const LOCAL = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$/;
const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** `address` trimmed with its domain lower-cased, or null when it is not a plausible address. */
export function normalizeEmail(address: string): string | null {
  const a = address.trim();
  if (a.length === 0 || a.length > MAX_EMAIL_LENGTH) return null;
  const at = a.lastIndexOf('@');
  if (at <= 0) return null;
  const local = a.slice(0, at);
  const domain = a.slice(at + 1).toLowerCase();
  if (!LOCAL.test(local) || local.startsWith('.') || local.endsWith('.') || local.includes('..')) return null;
  const labels = domain.split('.');
  if (labels.length < 2 || !labels.every((l) => LABEL.test(l)) || /^\d+$/.test(labels.at(-1)!)) return null;
  return `${local}@${domain}`;
}

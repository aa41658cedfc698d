import { signal } from '@preact/signals';

// Hash routes (`/#/content/<id>`): the API owns every real path (/contents, /wallet, …),
// so the app's pages live after the '#', and a reload or a shared link opens the same page.

export const route = signal<string>(currentPath());

export function currentPath(): string {
  const h = location.hash.replace(/^#/, '');
  return h.startsWith('/') ? h : '/';
}

export function navigate(path: string, opts: { replace?: boolean } = {}): void {
  const url = `#${path}`;
  if (opts.replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  route.value = currentPath();
}

addEventListener('hashchange', () => (route.value = currentPath()));
addEventListener('popstate', () => (route.value = currentPath()));

export interface Match {
  params: Record<string, string>;
  query: URLSearchParams;
}

/** `/content/:id` against `/content/abc?x=1` -> { params: { id: 'abc' }, query }. */
export function match(pattern: string, path: string): Match | null {
  const [p, q = ''] = path.split('?');
  const a = pattern.split('/').filter(Boolean);
  const b = p.split('/').filter(Boolean);
  if (a.length !== b.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < a.length; i++) {
    if (a[i].startsWith(':')) params[a[i].slice(1)] = decodeURIComponent(b[i]);
    else if (a[i] !== b[i]) return null;
  }
  return { params, query: new URLSearchParams(q) };
}

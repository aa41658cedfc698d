import type { ComponentType } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api } from './api.ts';
import { Link, Loading } from './components/common.tsx';
import { match, navigate, route, type Match } from './router.ts';
import { hasRole, session, setSession } from './session.ts';
import { AccountPage } from './pages/account.tsx';
import { CatalogPage } from './pages/catalog.tsx';
import { ChannelsPage } from './pages/channels.tsx';
import { ContentPage } from './pages/content.tsx';
import { EdgePage, EdgesPage } from './pages/edges.tsx';
import { TracePage } from './pages/trace.tsx';
import { BroadcastPage } from './pages/live-broadcast.tsx';
import { ChannelPage } from './pages/live-channel.tsx';
import { CalendarPage } from './pages/live-calendar.tsx';
import { GuidePage, ProgramPage } from './pages/live-guide.tsx';
import { MyChannelPage } from './pages/live-mine.tsx';
import { HomeServerPage } from './pages/home-server.tsx';
import { NotFoundPage } from './pages/not-found.tsx';
import { OrdersPage, StoreCounterPage } from './pages/orders.tsx';
import { PublishPage } from './pages/publish.tsx';
import { SchedulesPage } from './pages/schedules.tsx';
import { SignInPage, SignUpPage } from './pages/signin.tsx';
import { StatementPage } from './pages/statement.tsx';
import { StorePage } from './pages/store.tsx';
import { UsersPage } from './pages/users.tsx';
import { WalletPage } from './pages/wallet.tsx';

/** A page loaded when first opened: the dashboard's chart library is for operators only. */
function lazyPage(load: () => Promise<ComponentType<Match>>): ComponentType<Match> {
  let loaded: ComponentType<Match> | null = null;
  return function LazyPage(props: Match) {
    const [Page, setPage] = useState<ComponentType<Match> | null>(() => loaded);
    const [failed, setFailed] = useState<string | null>(null);
    useEffect(() => {
      if (!Page) load().then((c) => ((loaded = c), setPage(() => c)), (e) => setFailed(`The page could not be loaded (${(e as Error).message}); reload to try again.`));
    }, []);
    if (failed) return <p class="error" role="alert">{failed}</p>;
    return Page ? <Page {...props} /> : <Loading what="the page" />;
  };
}

const DashboardPage = lazyPage(() => import('./pages/dashboard.tsx').then((m) => m.DashboardPage));

// The app's pages (#13.3). `auth`: the page needs a signed-in account (sent to sign in and
// back otherwise); `role`: only shown in the menu to accounts with it (the API decides anyway).
interface PageDef {
  path: string;
  page: ComponentType<Match>;
  auth?: boolean;
  nav?: string;
  /** Any of these roles. */
  role?: string | string[];
}

export const pages: PageDef[] = [
  { path: '/', page: CatalogPage, nav: 'Catalog' },
  { path: '/content/:id', page: ContentPage },
  // Live channels (#14, docs/live.md): the guide is public; booking is for premium members.
  { path: '/live', page: GuidePage, nav: 'Live' },
  { path: '/live/calendar', page: CalendarPage, auth: true, nav: 'Live calendar' },
  { path: '/live/mine', page: MyChannelPage, auth: true, nav: 'My channel', role: 'premium' },
  { path: '/live/:id', page: ProgramPage },
  { path: '/live/:id/broadcast', page: BroadcastPage, auth: true },
  { path: '/channels/:id', page: ChannelPage },
  { path: '/signin', page: SignInPage },
  { path: '/signup', page: SignUpPage },
  { path: '/wallet', page: WalletPage, auth: true, nav: 'Wallet' },
  { path: '/schedules', page: SchedulesPage, auth: true, nav: 'Schedules' },
  { path: '/account', page: AccountPage, auth: true, nav: 'Account' },
  { path: '/publish', page: PublishPage, auth: true, nav: 'Publish', role: 'publisher' },
  { path: '/statement', page: StatementPage, auth: true, nav: 'Royalties', role: 'publisher' },
  // Home and store edges (#17 point 5; docs/web.md "Home server", "Orders", "Store counter").
  { path: '/home', page: HomeServerPage, auth: true, nav: 'Home server' },
  { path: '/orders', page: OrdersPage, auth: true, nav: 'Orders' },
  // S2.7: check a copy (docs/marks.md).
  { path: '/trace', page: TracePage, auth: true, nav: 'Check a copy' },
  { path: '/store', page: StorePage, auth: true, nav: 'Vouchers', role: 'store' },
  { path: '/admin/store-orders', page: StoreCounterPage, auth: true, nav: 'Store counter', role: ['store', 'operator'] },
  { path: '/admin/users', page: UsersPage, auth: true, nav: 'Users', role: 'operator' },
  { path: '/admin/dashboard', page: DashboardPage, auth: true, nav: 'Dashboard', role: 'operator' },
  { path: '/admin/channels', page: ChannelsPage, auth: true, nav: 'Channels', role: 'operator' },
  // Edge servers (#17; docs/edge.md): their caches, hit rates and load; one edge's plan, pins and settings.
  { path: '/admin/edges', page: EdgesPage, auth: true, nav: 'Edges', role: 'operator' },
  { path: '/admin/edges/:id', page: EdgePage, auth: true },
];

export function App() {
  const path = route.value;
  const s = session.value;

  // The roles shown come from the origin, not from storage: refresh them once per start.
  useEffect(() => {
    if (!s) return;
    api<{ id: string; username: string; roles: string[] }>('GET', '/auth/me')
      .then((me) => {
        const cur = session.value;
        if (cur && cur.token === s.token) setSession({ ...cur, username: me.username, roles: me.roles, userId: me.id });
      })
      .catch(() => {});
  }, [s?.token]);

  let found: { def: PageDef; m: Match } | null = null;
  for (const def of pages) {
    const m = match(def.path, path);
    if (m) {
      found = { def, m };
      break;
    }
  }
  useEffect(() => {
    if (found?.def.auth && !session.value) navigate(`/signin?next=${encodeURIComponent(path)}`, { replace: true });
    // Move focus to the new page's heading, so keyboard and screen reader users start there.
    (document.getElementById('page-title') as HTMLElement | null)?.focus({ preventScroll: true });
  }, [path]);

  const Body = found ? found.def.page : NotFoundPage;
  const showBody = !(found?.def.auth && !s);
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), document.getElementById('main')?.focus())}>
        Skip to content
      </a>
      <header class="top">
        <Link to="/" class="brand">
          Cascade
        </Link>
        <nav aria-label="Main">
          <ul>
            {pages
              .filter((p) => p.nav && (!p.auth || s) && (!p.role || [p.role].flat().some(hasRole)))
              .map((p) => (
                <li key={p.path}>
                  <Link to={p.path} class={found?.def === p ? 'current' : undefined}>
                    {p.nav}
                  </Link>
                </li>
              ))}
          </ul>
        </nav>
        <div class="who">
          {s ? (
            <>
              <span>
                Signed in as <strong>{s.username}</strong>
              </span>
              <button type="button" class="link" onClick={signOut}>
                Sign out
              </button>
            </>
          ) : (
            <>
              <Link to="/signin">Sign in</Link>
              <Link to="/signup">Sign up</Link>
            </>
          )}
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {showBody && <Body {...(found?.m ?? { params: {}, query: new URLSearchParams() })} />}
      </main>
      <footer>
        <a href="/docs">API reference</a> · <a href="/health">Origin health</a>
      </footer>
    </>
  );
}

async function signOut() {
  try {
    await api('POST', '/auth/logout');
  } catch {
    // Signed out here whatever the origin says: the token is dropped either way.
  }
  setSession(null);
  navigate('/');
}

import { Link, Page } from '../components/common.tsx';

export function NotFoundPage() {
  return (
    <Page title="Page not found">
      <p>
        There is no such page. Go to the <Link to="/">catalog</Link>.
      </p>
    </Page>
  );
}

import { Page } from '../components/common.tsx';

// Placeholder: written by the pages work of #13.
export function StorePage() {
  return (
    <Page title="store">
      <p>Not built yet.</p>
    </Page>
  );
}

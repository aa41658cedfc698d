import { Page } from '../components/common.tsx';

// Placeholder: written by the pages work of #13.
export function StatementPage() {
  return (
    <Page title="statement">
      <p>Not built yet.</p>
    </Page>
  );
}

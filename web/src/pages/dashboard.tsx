import { Page } from '../components/common.tsx';

// Placeholder: written by the pages work of #13.
export function DashboardPage() {
  return (
    <Page title="dashboard">
      <p>Not built yet.</p>
    </Page>
  );
}

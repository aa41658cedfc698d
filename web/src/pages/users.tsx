import { Page } from '../components/common.tsx';

// Placeholder: written by the pages work of #13.
export function UsersPage() {
  return (
    <Page title="users">
      <p>Not built yet.</p>
    </Page>
  );
}

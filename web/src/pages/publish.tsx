import { Page } from '../components/common.tsx';

// Placeholder: written by the pages work of #13.
export function PublishPage() {
  return (
    <Page title="publish">
      <p>Not built yet.</p>
    </Page>
  );
}

import { Page } from '../components/common.tsx';

// Placeholder: written by the pages work of #13.
export function WalletPage() {
  return (
    <Page title="wallet">
      <p>Not built yet.</p>
    </Page>
  );
}

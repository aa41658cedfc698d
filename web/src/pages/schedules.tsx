import { Page } from '../components/common.tsx';

// Placeholder: written by the pages work of #13.
export function SchedulesPage() {
  return (
    <Page title="schedules">
      <p>Not built yet.</p>
    </Page>
  );
}

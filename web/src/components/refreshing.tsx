import { useEffect, useRef, useState } from 'preact/hooks';

// Figures that refresh by themselves (operators' pages): asked every `everyMs` while the tab is
// visible; a hidden tab asks nothing and asks at once when shown again; `refresh()` asks now.
// One request at a time; an answer arriving after the page left is dropped.

export interface Refreshing<T> {
  data: T | null;
  error: string | null;
  /** The tab is hidden: nothing is asked. */
  paused: boolean;
  refresh: () => void;
}

export function useRefreshing<T>(load: (signal: AbortSignal) => Promise<T>, everyMs: number, deps: unknown[] = []): Refreshing<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [paused, setPaused] = useState(document.hidden);
  const now = useRef<() => void>(() => {});

  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let asking = false;
    const ctrl = new AbortController();
    const ask = async () => {
      if (asking) return;
      clearTimeout(timer);
      asking = true;
      try {
        const d = await load(ctrl.signal);
        if (live) (setData(d), setError(null));
      } catch (e) {
        if (live && (e as Error).name !== 'AbortError') setError((e as Error).message);
      } finally {
        asking = false;
        if (live && !document.hidden) timer = setTimeout(ask, everyMs);
      }
    };
    const onVisibility = () => {
      setPaused(document.hidden);
      if (document.hidden) clearTimeout(timer);
      else ask();
    };
    document.addEventListener('visibilitychange', onVisibility);
    now.current = ask;
    ask();
    return () => {
      live = false;
      clearTimeout(timer);
      ctrl.abort();
      document.removeEventListener('visibilitychange', onVisibility);
    };
  }, deps);

  return { data, error, paused, refresh: () => now.current() };
}

/** The page head's "Updated at … · refreshes every 5 s" (or "paused") and its Refresh now button. */
export function RefreshHead({ updated, paused, everyMs, refresh }: { updated: string | null; paused: boolean; everyMs: number; refresh: () => void }) {
  return (
    <div class="dash-head">
      <p class="muted" role="status" aria-live="polite" aria-atomic="true">
        {updated ? `Updated at ${updated}` : ''}
        {paused ? ' · paused while the tab is hidden' : updated ? ` · refreshes every ${everyMs / 1000} s` : ''}
      </p>
      <button type="button" class="secondary" onClick={refresh}>
        Refresh now
      </button>
    </div>
  );
}

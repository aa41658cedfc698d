import { useEffect, useRef, useState } from 'preact/hooks';
import { indexedDbKeyStore } from '../lib/device.ts';
import { downloadContent, type DownloadProgress, type DownloadResult } from '../lib/download.ts';
import { bytes, money } from '../format.ts';
import { session } from '../session.ts';
import type { CatalogItem } from '../types.ts';

// #13.4: the member downloads in the browser the way a terminal does (web/src/lib/download.ts):
// pieces under a grant, each verified against the signed manifest, receipts handed in, so the
// download is charged like any other. The file is saved from the verified bytes.

const keyStore = indexedDbKeyStore();

export function DownloadPanel({ content, onDone }: { content: CatalogItem; onDone: () => void }) {
  const [progress, setProgress] = useState<DownloadProgress | null>(null);
  const [result, setResult] = useState<DownloadResult | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [url, setUrl] = useState<string | null>(null);
  const abort = useRef<AbortController | null>(null);
  // A second click before the page re-renders must not start a second download (#13 "Bad input").
  const running = useRef(false);
  const saveLink = useRef<HTMLAnchorElement>(null);

  useEffect(() => () => {
    abort.current?.abort();
    if (url) URL.revokeObjectURL(url);
  }, [url]);

  async function start() {
    if (running.current || !session.value) return;
    running.current = true;
    setBusy(true);
    setError(null);
    setResult(null);
    setProgress(null);
    abort.current = new AbortController();
    try {
      const r = await downloadContent({ origin: location.origin, accountToken: session.value.token, contentId: content.id, keyStore, onProgress: setProgress, signal: abort.current.signal });
      setResult(r);
      const u = URL.createObjectURL(r.blob);
      setUrl(u);
      onDone();
      // Save at once, as a browser download does; the link stays for saving again.
      queueMicrotask(() => saveLink.current?.click());
    } catch (e) {
      setError((e as Error).name === 'AbortError' ? 'Download cancelled; nothing more is fetched. Pieces already verified were paid for.' : (e as Error).message);
    } finally {
      running.current = false;
      setBusy(false);
      abort.current = null;
    }
  }

  const pct = progress && progress.totalBytes > 0 ? Math.floor((progress.bytes / progress.totalBytes) * 100) : 0;
  return (
    <section aria-labelledby="dl-h" class="panel">
      <h2 id="dl-h">Download</h2>
      <p>
        This browser fetches the pieces from the origin under a grant, checks each against the manifest the origin signed, and hands in receipts: you are charged{' '}
        {money(content.price)} for the whole content, as with any terminal.
      </p>
      <div class="actions">
        <button type="button" onClick={start} disabled={busy} aria-busy={busy ? 'true' : undefined}>
          {busy ? 'Downloading…' : result ? 'Download again' : 'Download'}
        </button>
        {busy && (
          <button type="button" class="secondary" onClick={() => abort.current?.abort()}>
            Cancel
          </button>
        )}
      </div>
      {(busy || progress) && (
        <div>
          <label for="dl-progress">Verified pieces</label>
          <progress id="dl-progress" max={100} value={pct} aria-valuetext={`${pct} percent`} />
          <p role="status" aria-live="polite">
            {progress ? `${progress.pieces} of ${progress.totalPieces} pieces verified, ${bytes(progress.bytes)} of ${bytes(progress.totalBytes)} (${pct}%)` : 'Asking the origin for a grant…'}
          </p>
        </div>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {result && url && (
        <div role="status">
          <p>
            Done: {bytes(result.bytes)} verified. SHA-256 <code class="id" data-testid="sha256">{result.sha256}</code>
          </p>
          <p>
            <a ref={saveLink} href={url} download={fileName(content)}>
              Save {fileName(content)}
            </a>
          </p>
          {result.receipts.refused.length > 0 && (
            <p class="error">
              The origin refused {result.receipts.refused.length} receipt(s): {result.receipts.refused.map((r) => r.message).join(' ')}
            </p>
          )}
        </div>
      )}
    </section>
  );
}

/** The title as a file name (no path characters). */
function fileName(c: CatalogItem): string {
  return c.title.replace(/[\\/:*?"<>|\x00-\x1f]+/g, '_').slice(0, 120) || c.id.slice(0, 16);
}

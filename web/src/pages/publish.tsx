import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError } from '../api.ts';
import { Link, NeedsRole, Page } from '../components/common.tsx';
import { Field, FormError, Submit, useSubmit } from '../components/forms.tsx';
import { bytes } from '../format.ts';
import { hasRole, session, signOutExpired } from '../session.ts';
import { invalidCodeField, placeRefusal } from '../refusals.ts';

// Publishing (S1.1, publisher role): the same request as `cascade publish` (src/cli/publish.ts):
// POST /contents?title=&genre=&price=[&summary=][&author=] with the file's bytes as an
// application/octet-stream body, sent with XMLHttpRequest so the upload's progress shows
// and can be cancelled; then the thumbnail with PUT /contents/:id/thumbnail.

/** What PUT /contents/:id/thumbnail accepts (CONTRACT-13 "Thumbnails"). */
export const THUMBNAIL_TYPES = ['image/png', 'image/jpeg', 'image/webp', 'image/gif'];
export const THUMBNAIL_MAX_BYTES = 256 * 1024;
const META = ['title', 'genre', 'price', 'summary', 'author'];

interface Published {
  id: string;
  title: string;
  pieces: number;
  totalSize: number;
}

/** Why a thumbnail cannot be sent, checked in the browser before anything is uploaded; null if it can. */
export function thumbnailProblem(file: File | null): string | null {
  if (!file) return null;
  if (!THUMBNAIL_TYPES.includes(file.type)) return `The thumbnail must be a PNG, JPEG, WebP or GIF image; “${file.name}” is ${file.type ? file.type : 'of an unknown type'}.`;
  if (file.size > THUMBNAIL_MAX_BYTES) return `The thumbnail is at most 256 KiB; “${file.name}” is ${Math.ceil(file.size / 1024)} KiB.`;
  return null;
}

/** POST with upload progress; resolves with the JSON answer, rejects with the API's ApiError. */
function upload<T>(path: string, file: File, onProgress: (sent: number, total: number) => void, signal: { abort?: () => void }): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const token = session.value?.token;
    xhr.open('POST', path);
    if (token) xhr.setRequestHeader('authorization', `Bearer ${token}`);
    xhr.setRequestHeader('content-type', 'application/octet-stream');
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      let data: any = null;
      try {
        data = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        data = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) return resolve(data as T);
      const e = data?.error;
      const err = new ApiError(e?.code ?? `http_${xhr.status}`, e?.message ?? `The origin answered ${xhr.status}.`, xhr.status);
      if (xhr.status === 401 && token && (err.code === 'invalid_token' || err.code === 'unauthenticated')) signOutExpired();
      reject(err);
    };
    xhr.onerror = () => reject(new ApiError('network_error', 'The origin cannot be reached; check your connection and try again.', 0));
    xhr.onabort = () => reject(new ApiError('upload_cancelled', 'Upload cancelled: nothing was published.', 0));
    signal.abort = () => xhr.abort();
    xhr.send(file);
  });
}

export function PublishPage() {
  if (!hasRole('publisher')) return <NeedsRole role="publisher" />;
  return <PublishForm />;
}

function PublishForm() {
  const [meta, setMeta] = useState({ title: '', genre: '', price: '', summary: '', author: '' });
  const [file, setFile] = useState<File | null>(null);
  const [thumb, setThumb] = useState<File | null>(null);
  const [thumbError, setThumbError] = useState<string | null>(null);
  const [preview, setPreview] = useState<string | null>(null);
  const [progress, setProgress] = useState<{ sent: number; total: number } | null>(null);
  const [stage, setStage] = useState<string | null>(null);
  const [published, setPublished] = useState<(Published & { thumbnail: string | null }) | null>(null);
  const cancel = useRef<{ abort?: () => void }>({});
  const form = useSubmit(['file', 'thumbnail', ...META]);

  useEffect(() => {
    if (!thumb || thumbnailProblem(thumb)) return setPreview(null);
    const url = URL.createObjectURL(thumb);
    setPreview(url);
    return () => URL.revokeObjectURL(url);
  }, [thumb]);

  const set = (k: keyof typeof meta) => (e: Event) => setMeta({ ...meta, [k]: (e.currentTarget as HTMLInputElement).value });
  const errorOf = (k: string) => form.fieldErrors[k];

  function submit(e: Event) {
    e.preventDefault();
    const problem = thumbnailProblem(thumb);
    setThumbError(problem);
    if (problem || !file) return;
    form.run(async () => {
      setPublished(null);
      setProgress({ sent: 0, total: file.size });
      setStage(`Uploading ${file.name}`);
      const q = new URLSearchParams({ title: meta.title, genre: meta.genre, price: meta.price });
      if (meta.summary) q.set('summary', meta.summary);
      if (meta.author) q.set('author', meta.author);
      let r: Published;
      try {
        r = await upload<Published>(`/contents?${q}`, file, (sent, total) => setProgress({ sent, total }), cancel.current);
      } catch (err) {
        setProgress(null);
        setStage(null);
        placeRefusal(err, (x) => (x.code === 'empty_upload' || x.code === 'upload_too_large' ? 'file' : invalidCodeField(x, [...META])));
      } finally {
        cancel.current.abort = undefined;
      }
      let thumbnail: string | null = null;
      if (thumb) {
        setStage('Sending the thumbnail');
        try {
          await api('PUT', `/contents/${r.id}/thumbnail`, undefined, { rawBody: thumb, headers: { 'content-type': thumb.type } });
        } catch (err) {
          thumbnail = `The content is published, but the thumbnail was refused: ${(err as Error).message} You can send another one from the content’s page.`;
        }
      }
      setStage(null);
      setPublished({ ...r, thumbnail });
    });
  }

  const pct = progress && progress.total > 0 ? Math.floor((progress.sent / progress.total) * 100) : 0;
  return (
    <Page title="Publish">
      <p class="muted">The file is published as a new content: the origin splits it into pieces and signs its manifest. Only the origin serves it at first.</p>
      <form onSubmit={submit} class="publish" aria-describedby="publish-note">
        <FormError message={form.error} />
        <Field label="File" name="file" type="file" required error={errorOf('file')} onChange={(e) => setFile(e.currentTarget.files?.[0] ?? null)} />
        <Field label="Title" name="title" value={meta.title} required maxLength={200} error={errorOf('title')} onInput={set('title')} />
        <Field label="Summary" name="summary" error={errorOf('summary')} hint="Optional; line breaks are kept.">
          <textarea id="f-summary" name="summary" rows={4} maxLength={2000} value={meta.summary} aria-describedby={`f-summary-hint${errorOf('summary') ? ' f-summary-error' : ''}`} aria-invalid={errorOf('summary') ? 'true' : undefined} onInput={set('summary')} />
        </Field>
        <Field label="Author" name="author" value={meta.author} maxLength={200} error={errorOf('author')} hint="Optional." onInput={set('author')} />
        <Field label="Genre" name="genre" value={meta.genre} required maxLength={60} error={errorOf('genre')} onInput={set('genre')} />
        <Field label="Price" name="price" type="number" inputMode="numeric" min={0} step={1} value={meta.price} required error={errorOf('price')} hint="For the whole content, in minor units (e.g. cents), as the wallet shows them." onInput={set('price')} />
        <Field
          label="Thumbnail"
          name="thumbnail"
          type="file"
          accept={THUMBNAIL_TYPES.join(',')}
          hint="Optional: a PNG, JPEG, WebP or GIF image of at most 256 KiB."
          error={thumbError ?? errorOf('thumbnail')}
          onChange={(e) => {
            const f = e.currentTarget.files?.[0] ?? null;
            setThumb(f);
            setThumbError(thumbnailProblem(f));
          }}
        />
        {preview && <img class="thumb thumb-small" src={preview} alt="Preview of the chosen thumbnail" />}
        <p id="publish-note" class="muted">
          The content ID is fixed once published: a changed file is a new content.
        </p>
        <div class="actions">
          <Submit busy={form.busy}>Publish</Submit>
          {progress && form.busy && (
            <button type="button" class="secondary" onClick={() => cancel.current.abort?.()}>
              Cancel upload
            </button>
          )}
        </div>
      </form>
      {progress && (
        <div class="upload-progress">
          <label for="upload-progress">{stage ?? 'Upload'}</label>
          <progress id="upload-progress" max={100} value={pct} aria-valuetext={`${pct}%`}>
            {pct}%
          </progress>
          <p class="muted" aria-live="polite">
            {pct}% · {bytes(progress.sent)} of {bytes(progress.total)}
          </p>
        </div>
      )}
      {published && (
        <div class="notice" role="status">
          <p>
            Published <strong>{published.title}</strong>: {bytes(published.totalSize)} in {published.pieces} pieces.{' '}
            <Link to={`/content/${published.id}`}>Open its page</Link>
          </p>
          <p>
            Content ID <code class="id">{published.id}</code>
          </p>
          {published.thumbnail && <p class="error">{published.thumbnail}</p>}
        </div>
      )}
    </Page>
  );
}

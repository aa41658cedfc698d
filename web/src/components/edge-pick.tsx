import { useEffect } from 'preact/hooks';
import { api } from '../api.ts';
import { ErrorNote, Loading, useLoad } from './common.tsx';
import type { EdgeForMembers, EdgeKind } from '../types.ts';

// Choosing one home or store edge (S2.5, S2.6): GET /edges answers members the home and store
// edges (operators: every edge); the pages keep the kind they are about.

export type EdgesOfKind = ReturnType<typeof useEdgesOfKind>;

export function useEdgesOfKind(kind: EdgeKind) {
  const r = useLoad(() => api<{ items: EdgeForMembers[] }>('GET', '/edges'), []);
  return { ...r, items: (r.data?.items ?? []).filter((e) => e.kind === kind) };
}

/** A labelled select of the edges; picks the first (an online one if any) when none is chosen. */
export function EdgePick(props: { edges: EdgesOfKind; kind: EdgeKind; label: string; none: string; value: string | null; onChange: (id: string) => void }) {
  const { edges, value, onChange } = props;
  // The select shows the edge that will be chosen from its first drawing; the page hears of it
  // in the effect after (a select drawn with no choice read '' for a moment).
  const shown = value && edges.items.some((e) => e.id === value) ? value : (edges.items.find((e) => e.online) ?? edges.items[0])?.id;
  useEffect(() => {
    if (shown && shown !== value) onChange(shown);
  }, [edges.data]);
  if (edges.error) return <ErrorNote message={edges.error} />;
  if (edges.loading && !edges.data) return <Loading what={`the ${props.kind} edges`} />;
  if (edges.items.length === 0) return <p class="notice">{props.none}</p>;
  return (
    <div class="field edge-pick">
      <label for={`pick-${props.kind}`}>{props.label}</label>
      <select id={`pick-${props.kind}`} value={shown ?? ''} onChange={(e) => onChange(e.currentTarget.value)}>
        {edges.items.map((e) => (
          <option key={e.id} value={e.id}>
            {e.label} ({e.online ? 'online' : 'offline'})
          </option>
        ))}
      </select>
    </div>
  );
}

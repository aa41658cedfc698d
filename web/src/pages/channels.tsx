import { useState } from 'preact/hooks';
import { api } from '../api.ts';
import { ErrorNote, Loading, NeedsRole, Page, useLoad } from '../components/common.tsx';
import { Field, FormError, Submit, useSubmit } from '../components/forms.tsx';
import { TableWrap } from '../components/table-wrap.tsx';
import { money } from '../format.ts';
import { placeRefusal } from '../refusals.ts';
import { hasRole } from '../session.ts';
import type { Channel } from '../types.ts';

// Channels (operators, S3.2; docs/live.md "Channels"): the streaming server's channels with
// capacity, bitrate, tariff per slot, slot length and monthly quota (GET /live/channels); add one
// (POST /live/channels); change one in place (PATCH /live/channels/:id, only the fields changed).
// Every check is the API's; a refusal is shown beside the field it names.

const FIELDS = ['name', 'capacity', 'bitrateKbps', 'tariffPerSlot', 'slotMinutes', 'monthlyQuotaSlots'] as const;
type FieldName = (typeof FIELDS)[number];
type Values = Record<FieldName, string>;

const LABELS: Record<FieldName, string> = {
  name: 'Name',
  capacity: 'Capacity (viewers)',
  bitrateKbps: 'Bitrate (kbps)',
  tariffPerSlot: 'Tariff per slot',
  slotMinutes: 'Slot length (minutes)',
  monthlyQuotaSlots: 'Monthly quota (slots per member)',
};

const PLACE = { channel_name_taken: 'name', invalid_channel_name: 'name', invalid_slot_length: 'slotMinutes', slot_length_in_use: 'slotMinutes' };

/** A field's value as the API takes it: a number when the text is one, else the text for the API to refuse. */
function num(text: string): number | string {
  const t = text.trim();
  return t !== '' && Number.isFinite(Number(t)) ? Number(t) : t;
}

const valuesOf = (c: Channel): Values => ({
  name: c.name,
  capacity: String(c.capacity),
  bitrateKbps: String(c.bitrateKbps),
  tariffPerSlot: String(c.tariffPerSlot),
  slotMinutes: String(c.slotMinutes),
  monthlyQuotaSlots: String(c.monthlyQuotaSlots),
});

export function ChannelsPage() {
  return hasRole('operator') ? <Channels /> : <NeedsRole role="operator" />;
}

function Channels() {
  const list = useLoad(() => api<{ items: Channel[] }>('GET', '/live/channels'));
  const [editing, setEditing] = useState<string | null>(null);
  const [status, setStatus] = useState('');
  const items = list.data?.items ?? [];
  return (
    <Page title="Channels">
      <p class="muted">The streaming server’s channels that premium members book by the slot (S3.2). A tariff change does not reprice existing bookings.</p>
      <ErrorNote message={list.error} />
      {list.loading && !list.data && <Loading what="channels" />}
      {list.data && items.length === 0 && <p class="muted">No channel yet: add one below.</p>}
      <p role="status" class="ok-note">
        {status}
      </p>
      {items.length > 0 && (
        <TableWrap label="Channels table">
          <table class="channels">
            <caption class="visually-hidden">Channels</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col" class="num">
                  Capacity
                </th>
                <th scope="col" class="num">
                  Bitrate kbps
                </th>
                <th scope="col" class="num">
                  Tariff per slot
                </th>
                <th scope="col" class="num">
                  Slot minutes
                </th>
                <th scope="col" class="num">
                  Monthly quota
                </th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {items.map((c) =>
                editing === c.id ? (
                  <EditRow
                    key={c.id}
                    channel={c}
                    onDone={(saved) => {
                      setEditing(null);
                      if (saved) {
                        setStatus(`Channel ${saved.name} saved.`);
                        list.reload();
                      }
                    }}
                  />
                ) : (
                  <tr key={c.id}>
                    <th scope="row">{c.name}</th>
                    <td class="num">{c.capacity}</td>
                    <td class="num">{c.bitrateKbps}</td>
                    <td class="num">{money(c.tariffPerSlot)}</td>
                    <td class="num">{c.slotMinutes}</td>
                    <td class="num">{c.monthlyQuotaSlots}</td>
                    <td>
                      <button type="button" class="secondary" onClick={() => (setStatus(''), setEditing(c.id))}>
                        Edit<span class="visually-hidden"> {c.name}</span>
                      </button>
                    </td>
                  </tr>
                ),
              )}
            </tbody>
          </table>
        </TableWrap>
      )}
      <AddChannel onAdded={(c) => (setStatus(`Channel ${c.name} added.`), list.reload())} />
    </Page>
  );
}

/** One channel's row as a form: only the fields changed are sent. */
function EditRow({ channel, onDone }: { channel: Channel; onDone: (saved: Channel | null) => void }) {
  const [v, setV] = useState<Values>(valuesOf(channel));
  const form = useSubmit([...FIELDS]);
  const before = valuesOf(channel);
  const formId = `edit-${channel.id}`;
  const save = (e: Event) => {
    e.preventDefault();
    form.run(async () => {
      const patch: Record<string, unknown> = {};
      for (const f of FIELDS) if (v[f].trim() !== before[f]) patch[f] = f === 'name' ? v[f].trim() : num(v[f]);
      if (Object.keys(patch).length === 0) return onDone(null);
      let saved: Channel;
      try {
        saved = await api<Channel>('PATCH', `/live/channels/${encodeURIComponent(channel.id)}`, patch);
      } catch (err) {
        placeRefusal(err, PLACE);
      }
      onDone(saved);
    });
  };
  const cell = (f: FieldName) => {
    const id = `${formId}-${f}`;
    const error = form.fieldErrors[f];
    return (
      <>
        <input
          id={id}
          form={formId}
          aria-label={`${LABELS[f]} of ${channel.name}`}
          aria-invalid={error ? 'true' : undefined}
          aria-describedby={error ? `${id}-error` : undefined}
          inputMode={f === 'name' ? undefined : 'numeric'}
          maxLength={f === 'name' ? 40 : 12}
          size={f === 'name' ? 14 : 6}
          value={v[f]}
          onInput={(e) => setV({ ...v, [f]: e.currentTarget.value })}
        />
        {error && (
          <small id={`${id}-error`} class="field-error" role="alert">
            {error}
          </small>
        )}
      </>
    );
  };
  return (
    <tr class="editing">
      <th scope="row">{cell('name')}</th>
      {FIELDS.slice(1).map((f) => (
        <td key={f} class="num">
          {cell(f)}
        </td>
      ))}
      <td>
        <form id={formId} onSubmit={save} noValidate class="row-actions">
          <Submit busy={form.busy}>
            Save<span class="visually-hidden"> {channel.name}</span>
          </Submit>
          <button type="button" class="secondary" onClick={() => onDone(null)}>
            Cancel
          </button>
        </form>
        <FormError message={form.error} />
      </td>
    </tr>
  );
}

function AddChannel({ onAdded }: { onAdded: (c: Channel) => void }) {
  const empty: Values = { name: '', capacity: '', bitrateKbps: '', tariffPerSlot: '', slotMinutes: '10', monthlyQuotaSlots: '' };
  const [v, setV] = useState<Values>(empty);
  const form = useSubmit([...FIELDS]);
  const hints: Partial<Record<FieldName, string>> = {
    name: '1–40 letters, digits, spaces, “.”, “_”, “-”.',
    capacity: 'Viewers admitted at once.',
    tariffPerSlot: 'Charged per slot at reconfirmation (minor units).',
    slotMinutes: 'Must divide a day: 5, 10, 15, 20, 30, 60…',
    monthlyQuotaSlots: 'Empty: the origin’s default.',
  };
  return (
    <section aria-labelledby="add-channel-h">
      <h2 id="add-channel-h">Add a channel</h2>
      <form
        class="narrow"
        noValidate
        onSubmit={(e) => {
          e.preventDefault();
          form.run(async () => {
            const body: Record<string, unknown> = { name: v.name.trim() };
            for (const f of FIELDS.slice(1)) if (v[f].trim() !== '' || (f !== 'slotMinutes' && f !== 'monthlyQuotaSlots')) body[f] = num(v[f]);
            let c: Channel;
            try {
              c = await api<Channel>('POST', '/live/channels', body);
            } catch (err) {
              placeRefusal(err, PLACE);
            }
            setV(empty);
            onAdded(c);
          });
        }}
      >
        <FormError message={form.error} />
        {FIELDS.map((f) => (
          <Field
            key={f}
            label={LABELS[f]}
            name={f}
            hint={hints[f]}
            inputMode={f === 'name' ? undefined : 'numeric'}
            maxLength={f === 'name' ? 40 : 12}
            autocomplete="off"
            value={v[f]}
            error={form.fieldErrors[f]}
            onInput={(e) => setV({ ...v, [f]: e.currentTarget.value })}
          />
        ))}
        <Submit busy={form.busy}>Add channel</Submit>
      </form>
    </section>
  );
}

import type { DeliveryRecord, DeliveryRecords, RecordEvent } from '../../src/schedule/deliveries.ts';

// Delivery records written the one way the scheduler writes them: set-based, through
// `recordBatch`. An opened record's ID names its attempt in later events.

type Opening = Omit<Extract<RecordEvent, { kind: 'due' }>, 'kind' | 'attempt' | 'scheduleId' | 'windowEnd'> & { scheduleId?: string | null; windowEnd?: number | null };
type Ending = Omit<Extract<RecordEvent, { kind: 'end' }>, 'kind' | 'attempt' | 'outcome' | 'reason' | 'bytes'> & { reason?: string | null; bytes?: number };

export function recorder(deliveries: DeliveryRecords, now: () => number) {
  const read = async (terminalId: string, id: string): Promise<DeliveryRecord> => {
    const r = (await deliveries.history(terminalId, { limit: 1000 })).entries.find((e) => e.id === id);
    if (!r) throw new Error(`no record ${id}`);
    return { ...r, title: null };
  };
  const write = async (terminalId: string, event: RecordEvent) => {
    const opened = await deliveries.recordBatch([event], new Map(event.kind === 'due' ? [] : [[event.attempt, event.attempt]]));
    return read(terminalId, opened.get(event.attempt) ?? event.attempt);
  };
  return {
    due: (o: Opening) => write(o.terminalId, { kind: 'due', attempt: 'open', scheduleId: null, windowEnd: null, ...o }),
    start: (d: DeliveryRecord, source: 'origin' | 'edge' | 'peer') => write(d.terminalId, { kind: 'start', attempt: d.id, at: now(), source }),
    end: (d: DeliveryRecord, outcome: 'done' | 'deferred' | 'failed', e: Partial<Ending> = {}) =>
      write(d.terminalId, { kind: 'end', attempt: d.id, outcome, reason: null, bytes: 0, at: now(), ...e }),
  };
}

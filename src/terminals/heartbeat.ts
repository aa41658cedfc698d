import { badRequest } from '../core/errors.ts';
import type { TerminalState } from './tables.ts';

// S1.2: what a heartbeat carries, and which values the origin refuses as absurd.
// Holder selection (S1.5) and congestion ordering (S0.6) trust these numbers, so a
// heartbeat that cannot be true is refused whole (400 `invalid_heartbeat`) rather
// than clamped: a clamped lie still steers traffic.

export type HeartbeatInput = Omit<TerminalState, 'at'>;

/** Upper bound for any rate: 1 Tbit/s. Anything above is a unit mix-up or a lie. */
export const MAX_BPS = 1e12;

/**
 * How far the reported load may exceed the reported link capacity. Capacity is a
 * periodic estimate and load a short-window average, so a burst can briefly read
 * above capacity; 10% absorbs that noise. Beyond it the two numbers contradict each
 * other and we cannot tell which one is wrong, so we refuse both.
 */
export const LOAD_TOLERANCE = 1.1;

const RATIO_FIELDS = ['uptimeRatio', 'cpu'] as const;
const RATE_FIELDS = ['upBps', 'downBps', 'sendLoadBps', 'recvLoadBps'] as const;
export const HEARTBEAT_FIELDS = [...RATIO_FIELDS, ...RATE_FIELDS] as const;
/** Upper bound for a terminal's upload slots. */
export const MAX_SLOTS = 10_000;

function refuse(field: string, reason: string): never {
  throw badRequest('invalid_heartbeat', `Heartbeat refused: ${field} ${reason}.`, { field, reason });
}

/** Returns the checked state (only the known fields) or throws `invalid_heartbeat`. */
export function validateHeartbeat(input: unknown): HeartbeatInput {
  if (!input || typeof input !== 'object') refuse('body', 'must be an object');
  const raw = input as Record<string, unknown>;
  for (const field of HEARTBEAT_FIELDS) {
    const v = raw[field];
    if (typeof v !== 'number' || !Number.isFinite(v)) refuse(field, 'must be a finite number');
    if (v < 0) refuse(field, 'must not be negative');
  }
  for (const field of RATIO_FIELDS) if ((raw[field] as number) > 1) refuse(field, 'is a ratio and must be at most 1');
  for (const field of RATE_FIELDS) if ((raw[field] as number) > MAX_BPS) refuse(field, `must be at most ${MAX_BPS} bits/s`);
  const s = raw as unknown as HeartbeatInput;
  if (s.sendLoadBps > s.upBps * LOAD_TOLERANCE) refuse('sendLoadBps', 'exceeds the reported upstream capacity (upBps) by more than 10%');
  if (s.recvLoadBps > s.downBps * LOAD_TOLERANCE) refuse('recvLoadBps', 'exceeds the reported downstream capacity (downBps) by more than 10%');
  const slots = checkSlots(raw);
  return {
    uptimeRatio: s.uptimeRatio,
    upBps: s.upBps,
    downBps: s.downBps,
    sendLoadBps: s.sendLoadBps,
    recvLoadBps: s.recvLoadBps,
    cpu: s.cpu,
    ...slots,
  };
}

/**
 * S1.5 "not overloaded": upload slots and their average use since the last beat are
 * optional (older terminals do not send them), but come together: one without the
 * other cannot be judged. An average cannot exceed the slots there are.
 */
function checkSlots(raw: Record<string, unknown>): { slots: number; slotsBusy: number } | {} {
  const { slots, slotsBusy } = raw;
  if (slots === undefined && slotsBusy === undefined) return {};
  if (typeof slots !== 'number' || !Number.isInteger(slots) || slots < 1 || slots > MAX_SLOTS) refuse('slots', `must be an integer from 1 to ${MAX_SLOTS}, sent with slotsBusy`);
  if (typeof slotsBusy !== 'number' || !Number.isFinite(slotsBusy) || slotsBusy < 0) refuse('slotsBusy', 'must be a non-negative number, sent with slots');
  if (slotsBusy > slots) refuse('slotsBusy', 'exceeds the reported upload slots (slots)');
  return { slots, slotsBusy };
}

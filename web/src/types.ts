import type { EdgeKind, EdgeStats, PlacementPolicy } from '../../src/edge/tables.ts';
import type { Edge, EdgeHolding } from '../../src/edge/service.ts';
import type { Placement } from '../../src/edge/placement.ts';
import type { RentalPlan } from '../../src/edge/home/rental-rules.ts';
import type { MyOrder, Order } from '../../src/edge/orders.ts';
import type { Rental, RentalOpened, RentalService } from '../../src/edge/rentals.ts';
import type { OrderFormat, OrderPayment, OrderState } from '../../src/edge/tables-orders.ts';
import type { TraceAnswer } from '../../src/marks/trace.ts';

// Shapes the API answers (docs/content-list.md, docs/protocol.md); only what the app reads.

export interface CatalogItem {
  id: string;
  title: string;
  summary: string;
  author: string;
  genre: string;
  price: number;
  publisher: string;
  totalSize: number;
  pieces: number;
  createdAt: string;
  thumbnailUrl?: string | null;
}

export interface Comment {
  id: string;
  author: string;
  text: string;
  createdAt: string;
}

/** An item of the personal content list (S1.4). */
export interface ListItem extends CatalogItem {
  affordable: boolean;
  received: boolean;
  preferredGenre: boolean;
  placement: { until: string } | null;
  why: string[];
  rating: { average: number | null; count: number; mine: number | null };
  comments: Comment[];
  commentCount: number;
  notes: string | null;
  holdersOnline: number;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

// ---- live channels (docs/live.md; src/live/*.ts) ----

/** GET /time (S3.10). */
export interface OriginTime {
  now: string;
  epochMs: number;
}

/** A streaming channel (S3.2). */
export interface Channel {
  id: string;
  name: string;
  capacity: number;
  bitrateKbps: number;
  tariffPerSlot: number;
  slotMinutes: number;
  monthlyQuotaSlots: number;
  createdAt: string;
  updatedAt: string;
}

export interface CalendarSlot {
  start: string;
  end: string;
  state: 'free' | 'taken' | 'past';
  /** The program holding a taken slot, when listed (never a Secret one). */
  program: { id: string; title: string } | null;
  mine: boolean;
}

/** GET /live/calendar (S3.3). */
export interface LiveCalendar {
  date: string;
  timeZone: string;
  from: string;
  to: string;
  channels: { channel: Channel; slots: CalendarSlot[] }[];
}

export type OpenLevel = 'public' | 'password' | 'secret';
export type BookingStatus = 'awaiting_reconfirmation' | 'confirmed' | 'live' | 'done' | 'cancelled';

/** The body of POST /live/quote and POST /live/bookings. */
export interface BookingRequest {
  channelId: string;
  start: string;
  end: string;
  openLevel: OpenLevel;
  title: string;
  genre: string;
  outline?: string;
  detail?: string;
  discloseEmail?: boolean;
  discloseWebPage?: boolean;
  password?: string;
  friends?: string[];
  timeZone?: string;
}

/** POST /live/quote (S3.4). */
export interface Quote {
  channel: Channel;
  start: string;
  end: string;
  slots: number;
  tariffPerSlot: number;
  charge: number;
  deadline: string;
  deadlineReason: string;
  connectableWindow: { from: string; to: string };
  quota: { month: string; used: number; limit: number; afterBooking: number };
  wallet: { available: number; enough: boolean };
}

export interface BookingEvent {
  at: string;
  event: string;
  status: BookingStatus;
  detail: string;
}

/** A booking as GET /live/bookings answers it (S3.17). */
export interface Booking {
  id: string;
  channelId: string;
  channelName: string;
  start: string;
  end: string;
  slots: number;
  openLevel: OpenLevel;
  title: string;
  genre: string;
  outline: string;
  detail: string;
  discloseEmail: boolean;
  discloseWebPage: boolean;
  friends: string[];
  timeZone: string;
  status: BookingStatus;
  tariffPerSlot: number;
  charge: number;
  charged: boolean;
  deadline: string;
  connectableWindow: { from: string; to: string };
  viewerUrl: string;
  cancelReason: string | null;
  viewerPeak: number | null;
  createdAt: string;
  updatedAt: string;
  history: BookingEvent[];
}

/** The origin-signed settings document of POST /live/reconfirm (S3.6); read fields only. */
export interface SignedSettings {
  document: {
    reservationId: string;
    bookingId: string;
    title: string;
    ingest: { rtmp: { url: string; server: string; streamKey: string } };
    connectableWindow: { from: string; to: string };
    [k: string]: unknown;
  };
  signature: string;
  originKey: string;
}

/** A program of the guide (S3.11). */
export interface Program {
  id: string;
  channelId: string;
  channelName: string;
  start: string;
  end: string;
  title: string;
  genre: string;
  outline: string;
  detail: string;
  openLevel: OpenLevel;
  needsPassword: boolean;
  status: BookingStatus;
  when: 'upcoming' | 'on_air' | 'ended';
  broadcaster: { username: string; email: string | null; webPage: string | null };
  viewerUrl: string;
  viewerPeak: number | null;
}

/** GET /auth/me, with the contact details of PUT /me/contact (S3.8). */
export interface Me {
  id: string;
  username: string;
  roles: string[];
  createdAt: string;
  email?: string | null;
  webPage?: string | null;
}

// ---- live streaming (#15; docs/live.md "Watching", "Broadcasting"; src/live/streams.ts) ----

/** POST /live/programs/:id/viewers (S3.11, S3.12): a viewer session and its playlist. */
export interface ViewerJoin {
  session: string;
  /** `/live/programs/:id/index.m3u8?s=…`, stable for the program. */
  playlist: string;
  viewers: number;
  capacity: number;
  /** A session stops counting after this long without a fetch. */
  idleSeconds: number;
}

/** GET /live/programs/:id/audience (public). */
export interface Audience {
  programId: string;
  onAir: boolean;
  viewers: number;
  capacity: number;
  peak: number;
  total: number;
}

/** GET /live/bookings/:id/status and each `status` event of …/status/events (S3.10). */
export interface BroadcastStatus {
  programId: string;
  title: string;
  status: BookingStatus;
  /** The origin's clock. */
  now: string;
  epochMs: number;
  start: string;
  end: string;
  /** When the connection is cut (the connectable window's end). */
  windowEnd: string;
  elapsedSeconds: number;
  remainingSeconds: number;
  channel: { id: string; name: string; capacity: number; bitrateKbps: number };
  ingest: { live: boolean; since: string | null; take: number | null; bitrateKbps: number; segments: number };
  /** S3.13: whether what is received reaches viewers — stopped once the slot has ended. */
  distribution: 'before_start' | 'on' | 'stopped';
  viewers: { now: number; peak: number; total: number; capacity: number };
  /** S3.13: the extension offer in the slot's last ten minutes, or why there is none. */
  extension: ExtensionOffer;
}

/** S3.13 (src/live/extension-rules.ts): GET /live/bookings/:id/extension, and `extension` of the status. */
export interface ExtensionOffer {
  offered: boolean;
  /** Why (not): a stable code, and a sentence for the broadcaster. */
  code: 'offered' | 'not_yet' | 'over' | 'not_reconfirmed' | 'next_slot_taken' | 'quota_exceeded';
  reason: string;
  /** When the offer opens (end − 10 minutes). */
  opensAt: string;
  /** How many slots may be added now (0 when not offered). */
  slots: number;
  slotMinutes: number;
  /** The end after adding one slot (null when not offered). */
  until: string | null;
  /** What each added slot costs: the channel's tariff now. */
  chargePerSlot: number;
}

/** POST /live/bookings/:id/extend {until}: the booking as extended, what was charged (0 for a retry). */
export interface ExtendResult {
  booking: Booking;
  charged: number;
  already: boolean;
  end: string;
}

// ---- the channel's air (S3.14; src/live/filler-routes.ts) ----

/** A program of GET /live/channels/:id/now. */
export interface ChannelProgram {
  id: string;
  title: string;
  start: string;
  end: string;
  openLevel: OpenLevel;
  /** The broadcaster sends and the slot has started. */
  onAir: boolean;
}

/** GET /live/channels/:id/now (public): the program whose slot it is (null: filler), the next. */
export interface ChannelNow {
  channelId: string;
  /** The origin's clock. */
  now: string;
  program: ChannelProgram | null;
  next: ChannelProgram | null;
  /** The channel's filler playlist (public, no session). */
  filler: string;
}

/** S3.15: a program's recording (GET /live/recordings; src/live/recordings.ts). */
export interface Recording {
  programId: string;
  programTitle: string;
  programStart: string;
  programEnd: string;
  title: string | null;
  price: number;
  status: 'requested' | 'making' | 'made' | 'failed' | 'empty';
  contentId: string | null;
  error: string | null;
  attempts: number;
  requestedAt: string;
  updatedAt: string;
}

// ---- edge servers (#17; docs/edge.md; src/edge/service.ts, routes.ts) ----

// The edge's kinds, policies and counters are the server's own types (src/edge/tables.ts; types only, nothing bundled).
export type { EdgeKind, EdgeStats, PlacementPolicy };

/** An item of GET /edges as operators see it, one edge's holdings, and its plan: the server's own types. */
export type EdgeSummary = Edge;
export type { EdgeHolding };
/** S2.1: what the edge should fetch and drop, and what was left out, each with its reason. */
export type EdgePlan = Placement;

/** GET /edges/:id. */
export interface EdgeDetail extends EdgeSummary {
  holdings: EdgeHolding[];
  plan: EdgePlan;
  /** Pinned contents, oldest pin first, held or not. */
  pins: string[];
  /** Titles of the contents the pins and the plan name. */
  titles: Record<string, string>;
}

// ---- home and store edges, as members and store staff see them (S2.5, S2.6; docs/edge.md) ----

/** An item of GET /edges as a member sees it (home and store edges only). */
export interface EdgeForMembers {
  id: string;
  kind: EdgeKind;
  label: string;
  online: boolean;
  serveUrl: string;
}

/** GET /edges/:edgeId/catalog (home edges): what it has on hand to rent, with both plans' prices. */
export type HomeCatalog = Awaited<ReturnType<RentalService['catalog']>>;
export type HomeCatalogItem = HomeCatalog['items'][number];

// Rentals and orders are the server's own types (src/edge/rentals.ts, orders.ts; types only, nothing bundled).
export type { Rental, RentalOpened, RentalPlan, OrderState, OrderFormat, OrderPayment, MyOrder };
/** A store order as store staff see it (GET /edges/:edgeId/orders). */
export type StoreOrder = Order;

/** An item of GET /rentals/mine: active rentals carry their ticket and URLs on the home edge. */
export type MyRental = Awaited<ReturnType<RentalService['mine']>>[number];

// ---- traces (#18; docs/marks.md; src/marks/trace.ts) ----

/** POST /marks/trace: genuine or not, and whose copy for operators and the publisher. */
export type { TraceAnswer };

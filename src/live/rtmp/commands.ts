import { decodeAmf0, encodeAmf0, type Amf0Object, type Amf0Value } from './amf0.ts';
import type { RtmpMessage } from './chunk-reader.ts';
import { MSG } from './control.ts';
import { rtmpError } from './errors.ts';

// RTMP commands (AMF0 command messages, type 20) as ingest uses them (S3.9; RTMP 1.0
// specification §7.2): reading the peer's, building our answers. The command flow itself
// (what is allowed when) is the connection's.

/** Chunk stream our commands and status messages travel on (§5.3.1.1: 3 and up are free). */
const COMMAND_CSID = 3;
const STATUS_CSID = 5;

export interface Command {
  name: string;
  transactionId: number;
  /** The command object, null for most commands after connect. */
  object: Amf0Object | null;
  /** Further arguments (publish: stream name, publishing type). */
  args: Amf0Value[];
  /** Message stream the command came on (publish: the stream createStream gave). */
  streamId: number;
}

const isObject = (v: Amf0Value): v is Amf0Object => typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === null;

export function parseCommand(m: RtmpMessage, maxDepth: number): Command {
  const [name, transactionId, object, ...args] = decodeAmf0(m.payload, maxDepth);
  if (typeof name !== 'string') throw rtmpError('command_invalid', 'command name is not a string');
  if (typeof transactionId !== 'number' || !Number.isFinite(transactionId)) throw rtmpError('command_invalid', `${name}: transaction ID is not a number`);
  if (object !== null && object !== undefined && !isObject(object)) throw rtmpError('command_invalid', `${name}: command object is neither an object nor null`);
  return { name, transactionId, object: object ?? null, args, streamId: m.streamId };
}

function command(streamId: number, csid: number, ...values: Amf0Value[]): RtmpMessage {
  return { csid, type: MSG.commandAmf0, streamId, timestamp: 0, payload: encodeAmf0(...values) };
}

/** connect's answer: server properties and NetConnection.Connect.Success. */
export const connectResult = (tid: number) =>
  command(
    0,
    COMMAND_CSID,
    '_result',
    tid,
    { fmsVer: 'FMS/3,0,1,123', capabilities: 31 },
    { level: 'status', code: 'NetConnection.Connect.Success', description: 'Connection succeeded.', objectEncoding: 0 },
  );

/** A plain _result: releaseStream, FCPublish (null, undefined) and createStream (null, stream ID). */
export const result = (tid: number, value: Amf0Value) => command(0, COMMAND_CSID, '_result', tid, null, value);

export type StatusCode =
  | 'NetStream.Publish.Start'
  | 'NetStream.Publish.BadName'
  | 'NetStream.Publish.BadConnection'
  | 'NetStream.Unpublish.Success'
  | 'NetStream.Play.Failed';

/** onStatus on the publishing stream (§7.2.2.6); level "error" for a refusal. */
export const onStatus = (streamId: number, level: 'status' | 'error', code: StatusCode, description: string) =>
  command(streamId, STATUS_CSID, 'onStatus', 0, null, { level, code, description });

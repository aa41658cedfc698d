// RTMP ingest (S3.9; docs/rtmp.md): publishers (OBS, ffmpeg) push to rtmp://host:1935/live/<key>,
// the key is authorized before the publish is acknowledged, and the media comes out as FLV for
// ffmpeg to package. Modules, one job each:
//   handshake.ts     C0/C1/C2 ↔ S0/S1/S2 (the simple handshake)
//   chunk-reader.ts  chunks → messages, bounded (chunk size, message length, pending bytes)
//   chunk-writer.ts  messages → chunks
//   control.ts       message types, protocol control and user control messages
//   amf0.ts          AMF0 encode/decode, bounded nesting, lengths checked
//   commands.ts      command parsing and our replies (_result, onStatus)
//   flv.ts           FLV header and tags, the bounded queue towards the consumer
//   connection.ts    one connection's state machine: the command flow, authorize, media
//   server.ts        the TCP server, connection limit, the table of live keys
//   limits.ts        every bound and its default
export { createRtmpServer, type RtmpServer, type RtmpServerOptions } from './server.ts';
export { keyHash, type AuthorizeResult, type PublishStart, type RtmpLog } from './connection.ts';
export { DEFAULT_RTMP_LIMITS, rtmpLimits, type RtmpLimits } from './limits.ts';
export type { RtmpCloseCode } from './errors.ts';

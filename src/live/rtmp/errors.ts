// Why a connection is closed (S3.9): every refusal and protocol error carries a short, stable
// reason code (for logs, tests and metrics) and a detail for the human reading the log.

export type RtmpCloseCode =
  | 'handshake_bad_version'
  | 'handshake_timeout'
  | 'chunk_size_invalid'
  | 'chunk_size_over_limit'
  | 'chunk_stream_unknown'
  | 'too_many_chunk_streams'
  | 'message_too_long'
  | 'pending_bytes_over_limit'
  | 'input_over_limit'
  | 'output_over_limit'
  | 'amf_invalid'
  | 'command_invalid'
  | 'command_out_of_order'
  | 'media_before_publish'
  | 'unsupported'
  | 'too_many_streams'
  | 'publish_timeout'
  | 'idle_timeout'
  | 'consumer_stalled'
  | 'refused'
  | 'server_closing'
  | 'ended'
  | 'socket_error'
  | 'internal';

/** A violation found while reading the peer's bytes: the connection is closed with this reason. */
export class RtmpError extends Error {
  constructor(
    readonly code: RtmpCloseCode,
    detail: string,
  ) {
    super(detail);
    this.name = 'RtmpError';
  }
}

export const rtmpError = (code: RtmpCloseCode, detail: string) => new RtmpError(code, detail);

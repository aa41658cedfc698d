// The live viewer's player (S3.11; docs/live.md "Watching"): hls.js (its light build, loaded
// when a viewer first presses Watch) on Media Source Extensions; Safari's own HLS only where
// hls.js cannot run. A 401 on the playlist or a segment means the viewer session is over
// (`viewer_session_expired`): the page joins again and loads the new playlist. A playlist that
// ends (#EXT-X-ENDLIST: the slot is over) is played to its last segment, then `ended`. The channel
// page plays the channel's filler (public, no session) in the same player. Framework-free.

export interface PlayerEvents {
  /** The session was refused (401): join again, then `load` the new playlist. */
  expired(): void;
  /** Playback stopped for good; a sentence for the viewer. */
  fatal(message: string): void;
  /** The playlist ended (#EXT-X-ENDLIST) and its last segment has played. */
  ended?(): void;
}

export interface LivePlayer {
  /** Plays another playlist (the one of a new session) in the same video element. */
  load(url: string): void;
  destroy(): void;
}

/** Plays the live playlist `url` in `video` (muted, so browsers let it start by itself). */
export async function playLive(video: HTMLVideoElement, url: string, on: PlayerEvents): Promise<LivePlayer> {
  const { default: Hls } = await import('hls.js/light');
  video.muted = true;
  if (!Hls.isSupported()) return nativeHls(video, url, on);
  let hls: InstanceType<typeof Hls> | null = null;
  let finite = false; // the playing playlist has ended (ENDLIST)
  const onEnded = () => {
    if (finite) on.ended?.();
  };
  video.addEventListener('ended', onEnded);
  const start = (src: string) => {
    finite = false;
    hls?.destroy();
    const h = new Hls({ enableWorker: false, liveSyncDurationCount: 2 });
    let recovered = false;
    h.on(Hls.Events.MANIFEST_PARSED, () => void video.play().catch(() => {}));
    h.on(Hls.Events.LEVEL_UPDATED, (_e, data) => {
      if (hls === h && !data.details.live) finite = true;
    });
    h.on(Hls.Events.ERROR, (_e, data) => {
      if (!data.fatal || hls !== h) return;
      if (data.response?.code === 401) return on.expired();
      // A decoding hiccup is recovered once; anything else stops playback with what went wrong.
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !recovered) {
        recovered = true;
        return h.recoverMediaError();
      }
      on.fatal(`Playback stopped (${data.details}). Press Watch to try again.`);
    });
    h.loadSource(src);
    h.attachMedia(video);
    hls = h;
  };
  start(url);
  return {
    load: start,
    destroy() {
      video.removeEventListener('ended', onEnded);
      hls?.destroy();
      hls = null;
    },
  };
}

/** Safari without Media Source Extensions (iPhone): the browser plays HLS itself. */
function nativeHls(video: HTMLVideoElement, url: string, on: PlayerEvents): LivePlayer {
  if (!video.canPlayType('application/vnd.apple.mpegurl')) {
    on.fatal('This browser cannot play live streams (it has neither Media Source Extensions nor HLS).');
    return { load() {}, destroy() {} };
  }
  // The browser does not say why a load failed: a network error is taken as an ended session
  // (joining again tells the viewer the real reason if there is one).
  const onError = () => (video.error?.code === MediaError.MEDIA_ERR_NETWORK ? on.expired() : on.fatal('Playback stopped. Press Watch to try again.'));
  video.addEventListener('error', onError);
  const onEnded = () => on.ended?.();
  video.addEventListener('ended', onEnded);
  const load = (src: string) => {
    video.src = src;
    void video.play().catch(() => {});
  };
  load(url);
  return {
    load,
    destroy() {
      video.removeEventListener('error', onError);
      video.removeEventListener('ended', onEnded);
      video.removeAttribute('src');
      video.load();
    },
  };
}

// A rented video on a home edge (S2.5; docs/web.md "Home server"): hls.js (its light build,
// loaded when a member first presses Play) on Media Source Extensions, Safari's own HLS only
// where hls.js cannot run. The playlist is a finished one (VOD, #EXT-X-ENDLIST): the video's
// native controls seek, and seekBy moves by a few seconds. Framework-free.

export interface VodPlayer {
  destroy(): void;
}

/** Plays the VOD playlist `url` in `video`; `fatal` gets a sentence when playback stops for good. */
export async function playVod(video: HTMLVideoElement, url: string, fatal: (message: string) => void): Promise<VodPlayer> {
  const { default: Hls } = await import('hls.js/light');
  video.muted = true; // so browsers let it start by itself; the controls unmute
  if (!Hls.isSupported()) {
    if (!video.canPlayType('application/vnd.apple.mpegurl')) {
      fatal('This browser cannot play HLS (it has neither Media Source Extensions nor HLS).');
      return { destroy() {} };
    }
    video.src = url;
    void video.play().catch(() => {});
    return {
      destroy() {
        video.removeAttribute('src');
        video.load();
      },
    };
  }
  const hls = new Hls({ enableWorker: false });
  let recovered = false;
  hls.on(Hls.Events.MANIFEST_PARSED, () => void video.play().catch(() => {}));
  hls.on(Hls.Events.ERROR, (_e, data) => {
    if (!data.fatal) return;
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !recovered) {
      recovered = true;
      return hls.recoverMediaError();
    }
    const status = data.response?.code;
    fatal(status === 403 ? 'The home server refuses this rental now (it may have ended). Reload the page to see its state.' : `Playback stopped (${data.details}). Press Play to try again.`);
  });
  hls.loadSource(url);
  hls.attachMedia(video);
  return { destroy: () => hls.destroy() };
}

/** Moves the video by `seconds` (negative: back), within its length. */
export function seekBy(video: HTMLVideoElement, seconds: number): void {
  const end = Number.isFinite(video.duration) ? video.duration : Infinity;
  video.currentTime = Math.min(Math.max(0, video.currentTime + seconds), end);
}

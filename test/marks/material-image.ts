import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { FFMPEG } from '../helpers/ffmpeg.ts';

// S2.3 test material for the image carrier: ffmpeg's test sources at the two sizes the plan
// names, PNG and JPEG. Textured (mandelbrot, testsrc2, cellauto), mostly flat (smptehdbars) and
// smooth (a gradient with no texture at all: the hardest host for a perceptual mark).

export interface TestImage {
  name: string;
  path: string;
  format: 'png' | 'jpeg';
  width: number;
  height: number;
}

const SOURCES: Array<{ name: string; src: string; size: [number, number]; ext: 'png' | 'jpg' }> = [
  { name: 'mandelbrot', src: 'mandelbrot=s=640x480', size: [640, 480], ext: 'png' },
  { name: 'testsrc2', src: 'testsrc2=s=512x512', size: [512, 512], ext: 'png' },
  { name: 'smptehdbars', src: 'smptehdbars=s=640x480', size: [640, 480], ext: 'jpg' },
  // A fixed seed: ffmpeg's default (-1) draws a new grid every run, and now and then one carries the mark.
  { name: 'cellauto', src: 'cellauto=s=512x512:rule=110:random_fill_ratio=0.5:random_seed=110', size: [512, 512], ext: 'png' },
  // A diagonal ramp with a little colour: no texture anywhere.
  { name: 'gradient', src: 'color=c=black:s=640x480,geq=r=X*255/W:g=(X+Y)*255/(W+H):b=Y*255/H', size: [640, 480], ext: 'jpg' },
];

/** Writes the test images into `dir` (once) and lists them. */
export function testImages(dir: string): TestImage[] {
  mkdirSync(dir, { recursive: true });
  return SOURCES.map(({ name, src, size, ext }) => {
    const file = path.join(dir, `${name}.${ext}`);
    if (!existsSync(file)) {
      // cellauto needs a few generations before it fills the frame.
      const skip = name === 'cellauto' ? ['-ss', '2'] : [];
      const quality = ext === 'jpg' ? ['-q:v', '2'] : [];
      const r = spawnSync(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', ...skip, '-i', src, '-frames:v', '1', ...quality, '-pix_fmt', ext === 'jpg' ? 'yuvj420p' : 'rgb24', file]);
      if (r.status !== 0) throw new Error(`ffmpeg could not make ${name}: ${r.stderr}`);
    }
    return { name, path: file, format: ext === 'jpg' ? 'jpeg' : 'png', width: size[0], height: size[1] };
  });
}

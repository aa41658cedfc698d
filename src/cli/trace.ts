import type { Command } from 'commander';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { badRequest } from '../core/errors.ts';
import type { TraceAnswer } from '../marks/trace.ts';
import { apiFromProfile } from './profile.ts';

// `cascade trace FILE` (S2.7): sends a suspect copy to the origin, which says whether it is
// genuine and — to operators and the content's publisher — whose copy it is. Exit status 0 for a
// genuine copy, 3 when it is not (so scripts can sort files); errors exit 1 as every command’s do.

export function registerTrace(program: Command) {
  program
    .command('trace')
    .description('check a copy: is it genuine, and (operators, the publisher) whose copy it is')
    .argument('<file>', 'the suspect file (an image, WAV/MP3 audio or a video)')
    .action(async (file: string) => {
      const g = program.opts();
      let size: number;
      try {
        const s = await stat(file);
        if (!s.isFile()) throw badRequest('not_a_file', `${file} is not a regular file.`);
        size = s.size;
      } catch (err: any) {
        if (err?.code === 'ENOENT') throw badRequest('file_not_found', `No such file: ${path.resolve(file)}`);
        throw err;
      }
      if (!g.json) process.stderr.write(`checking ${path.basename(file)} (${(size / 1e6).toFixed(1)} MB)…\n`);
      const api = apiFromProfile({ origin: g.origin });
      const t = await api.upload<TraceAnswer>('/marks/trace', createReadStream(file), size);
      if (g.json) process.stdout.write(JSON.stringify(t) + '\n');
      else process.stdout.write(describeTrace(t));
      if (!t.genuine) process.exitCode = 3;
    });
}

/** The answer as lines a person reads. */
export function describeTrace(t: TraceAnswer): string {
  const lines = [`${t.genuine ? 'genuine' : 'not genuine'}${t.carrier ? ` (${t.carrier})` : ''}: ${t.message}`];
  if (t.copy) {
    lines.push(`  user:      ${t.copy.user.username ?? '?'} (${t.copy.user.id})`);
    lines.push(`  edge:      ${t.copy.edge.label ?? '?'} (${t.copy.edge.id})`);
    lines.push(`  origin:    ${t.copy.origin.id}`);
    lines.push(`  content:   ${t.copy.content.title ?? '?'} (${t.copy.content.id})`);
    lines.push(`  delivery:  ${t.copy.deliveryId}, serial ${t.copy.serial}, ${t.copy.kind}, ${t.copy.deliveredAt}`);
  }
  if (t.confidence !== null) {
    lines.push(`  confidence ${formatConfidence(t.confidence, t.falseMatch ?? 1)}; ${t.bitErrors}/${t.bits} bits corrected; ${t.where}`);
  }
  return lines.join('\n') + '\n';
}

/** "99.9999 %" or, past what a percentage shows, the chance of a false match. */
export function formatConfidence(confidence: number, falseMatch: number): string {
  if (falseMatch < 1e-6) return `> 99.9999 % (false-match chance ${falseMatch.toExponential(1)})`;
  return `${(confidence * 100).toFixed(4)} % (false-match chance ${falseMatch.toExponential(1)})`;
}

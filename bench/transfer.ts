// npm run bench -- transfer [--mib 512] [--rounds 5] [--concurrency 8] [--run-pieces 4]
//
// Fetches one content from a real origin process over loopback with the verified
// piece protocol (grant, proof, SHA-256 per piece, journal, receipts), and the same
// bytes from a plain static HTTP server (node:http + fs stream, also a child
// process) as the baseline. Rounds alternate baseline and ours; `ratio` is the
// median of the per-round ratios (each pairs two runs close in time, which this
// shared machine needs), and the MB/s figures are the medians of each side.
// Last line: {"bench":"transfer","bytes":…,"ours_MBps":…,"baseline_MBps":…,"ratio":…,"sha256_MBps":…,"cpu_s_per_gb":{…}}
// (CPU-seconds per GB for each side: utime + stime of each process, all threads, around each download.)
import { spawn } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdtempSync, openSync, closeSync, writeSync, readFileSync, readSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { Api } from '../src/core/http-client.ts';
import { deviceSession } from '../src/terminals/device.ts';
import { download, fileTarget, RUN_PIECES } from '../src/transfer/downloader.ts';
import { spawnOrigin } from '../test/helpers/processes.ts';
import { median } from './_stats.ts';

const { values } = parseArgs({ options: { mib: { type: 'string', default: '512' }, rounds: { type: 'string', default: '5' }, concurrency: { type: 'string', default: '8' }, 'run-pieces': { type: 'string', default: String(RUN_PIECES) } } });
const MiB = 1024 * 1024;
const size = Number(values.mib) * MiB;
const rounds = Number(values.rounds);
const work = mkdtempSync(path.join(os.tmpdir(), 'cascade-bench-'));
// Both downloads write into RAM (tmpfs) when there is one: this machine's shared disk
// swings by 2-3x between runs and would drown the protocol's own cost.
const outDir = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/cascade-bench-') : work;
const log = (msg: string) => process.stderr.write(`[bench transfer] ${msg}\n`);

function makeFile(file: string) {
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(16 * MiB);
  for (let done = 0; done < size; done += chunk.length) {
    randomFillSync(chunk);
    writeSync(fd, chunk, 0, Math.min(chunk.length, size - done));
  }
  closeSync(fd);
}

function sha256Rate(file: string): number {
  const fd = openSync(file, 'r');
  const buf = Buffer.alloc(MiB);
  const started = performance.now();
  let n = 0;
  while ((n = readSync(fd, buf, 0, MiB, null)) > 0) createHash('sha256').update(n === MiB ? buf : buf.subarray(0, n)).digest();
  closeSync(fd);
  return size / 1e6 / ((performance.now() - started) / 1000);
}

/** The baseline: a plain static file server in its own process. */
async function staticServer(file: string): Promise<{ url: string; stop: () => void; pid: number }> {
  const code = `
    const http = require('node:http'); const fs = require('node:fs');
    const size = fs.statSync(process.argv[1]).size;
    const s = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
      fs.createReadStream(process.argv[1], { highWaterMark: 1 << 20 }).pipe(res);
    });
    s.listen(0, '127.0.0.1', () => console.log(s.address().port));`;
  const proc = spawn(process.execPath, ['-e', code, file], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((r) => proc.stdout.once('data', (d) => r(String(d).trim())));
  return { url: `http://127.0.0.1:${port}/file`, stop: () => proc.kill(), pid: proc.pid! };
}

async function timeBaseline(url: string, out: string): Promise<number> {
  const started = performance.now();
  const res = await request(url);
  await pipeline(res.body, createWriteStream(out, { highWaterMark: MiB }));
  return size / 1e6 / ((performance.now() - started) / 1000);
}

/** CPU seconds a process has used so far, all threads, user and system (`/proc/<pid>/stat`, in clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function main() {
  const source = path.join(work, 'source.bin');
  log(`writing ${size / MiB} MiB of random bytes`);
  makeFile(source);

  const origin = await spawnOrigin({ dataDir: path.join(work, 'origin') });
  try {
    const operator = new Api(origin.url, (await new Api(origin.url).post('/auth/login', origin.operator)).token);
    await operator.post('/users', { username: 'bench-publisher', password: 'bench-password-1', roles: ['publisher'] });
    await operator.post('/users', { username: 'bench-member', password: 'bench-password-2', roles: ['member'] });
    const publisher = new Api(origin.url, (await new Api(origin.url).post('/auth/login', { username: 'bench-publisher', password: 'bench-password-1' })).token);

    log('publishing');
    const t0 = performance.now();
    const published = await publisher.request('POST', '/contents?title=bench&genre=bench&price=100', {
      body: createReadStream(source, { highWaterMark: MiB }),
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
    });
    const publishMBps = size / 1e6 / ((performance.now() - t0) / 1000);
    log(`published ${published.id} at ${publishMBps.toFixed(0)} MB/s`);

    const member = new Api(origin.url, (await new Api(origin.url).post('/auth/login', { username: 'bench-member', password: 'bench-password-2' })).token);
    const device = await deviceSession(member, path.join(work, 'home'));
    const originKey = (await member.get('/origin')).publicKey;
    const api = new Api(origin.url, device.token);
    const baseline = await staticServer(source);

    const ours: number[] = [];
    const base: number[] = [];
    // CPU-seconds per GB moved, each side (docs/benchmarks.md: two processes share two cores, so this is what sets the ratio).
    const cpu = { ours_receiver: [] as number[], ours_source: [] as number[], baseline_receiver: [] as number[], baseline_server: [] as number[] };
    const perGB = (s: number) => (s / size) * 1e9;
    // One unmeasured round of each first: page cache, JIT and connection warm-up.
    await timeBaseline(baseline.url, path.join(outDir, 'warm-baseline.bin'));
    rmSync(path.join(outDir, 'warm-baseline.bin'));
    await download({ api, originKey, device, contentId: published.id, files: fileTarget(path.join(outDir, 'warm-ours.bin')) });
    rmSync(path.join(outDir, 'warm-ours.bin'));
    for (let r = 0; r < rounds; r++) {
      const outBase = path.join(outDir, `baseline-${r}.bin`);
      let c0 = [cpuSeconds(process.pid), cpuSeconds(baseline.pid)];
      const b = await timeBaseline(baseline.url, outBase);
      cpu.baseline_receiver.push(perGB(cpuSeconds(process.pid) - c0[0]));
      cpu.baseline_server.push(perGB(cpuSeconds(baseline.pid) - c0[1]));
      rmSync(outBase);
      const outOurs = path.join(outDir, `ours-${r}.bin`);
      c0 = [cpuSeconds(process.pid), cpuSeconds(origin.proc.pid!)];
      const started = performance.now();
      const windowStart = process.hrtime.bigint() / 1000n;
      const result = await download({ api, originKey, device, contentId: published.id, files: fileTarget(outOurs), concurrency: Number(values.concurrency), runPieces: Number(values['run-pieces']) });
      const o = size / 1e6 / ((performance.now() - started) / 1000);
      cpu.ours_receiver.push(perGB(cpuSeconds(process.pid) - c0[0]));
      cpu.ours_source.push(perGB(cpuSeconds(origin.proc.pid!) - c0[1]));
      // For cutting CPU profiles to the download (bench/_cpuprofile.ts --window).
      log(`window ours ${r + 1}: ${windowStart}-${process.hrtime.bigint() / 1000n}`);
      if (result.totalBytes !== size || result.fetchedPieces !== result.totalPieces) throw new Error('download incomplete');
      rmSync(outOurs);
      log(`round ${r + 1}: ours ${o.toFixed(0)} MB/s, baseline ${b.toFixed(0)} MB/s; CPU s/GB ours ${cpu.ours_receiver.at(-1)!.toFixed(2)} + ${cpu.ours_source.at(-1)!.toFixed(2)}, baseline ${cpu.baseline_receiver.at(-1)!.toFixed(2)} + ${cpu.baseline_server.at(-1)!.toFixed(2)} (receiver + source)`);
      ours.push(o);
      base.push(b);
    }
    baseline.stop();
    const sha = sha256Rate(source);
    const round = (x: number) => Math.round(x * 10) / 10;
    console.log(
      JSON.stringify({
        bench: 'transfer',
        bytes: size,
        ours_MBps: round(median(ours)),
        baseline_MBps: round(median(base)),
        ratio: Math.round(median(ours.map((o, i) => o / base[i])) * 1000) / 1000,
        rounds,
        sha256_MBps: round(sha),
        publish_MBps: round(publishMBps),
        concurrency: Number(values.concurrency),
        run_pieces: Number(values['run-pieces']),
        out_dir: outDir === work ? 'disk' : 'tmpfs',
        cpu_s_per_gb: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, Math.round(median(v) * 100) / 100])),
      }),
    );
  } finally {
    await origin.destroy();
    rmSync(work, { recursive: true, force: true });
    rmSync(outDir, { recursive: true, force: true });
  }
}

await main();

// Loaded into the origin process by bench/memory.ts (`node --expose-gc --require`): on SIGUSR2
// it runs a full garbage collection and writes process.memoryUsage() to GC_PROBE_FILE, so the
// bench can tell memory the origin keeps from garbage it has not collected yet. Bench only.
const { writeFileSync } = require('node:fs');
// With GC_PROBE_SNAPSHOTS set (a directory), each probe also writes a heap snapshot there.
let n = 0;
process.on('SIGUSR2', () => {
  global.gc();
  if (process.env.GC_PROBE_SNAPSHOTS) require('node:v8').writeHeapSnapshot(require('node:path').join(process.env.GC_PROBE_SNAPSHOTS, `${++n}.heapsnapshot`));
  writeFileSync(process.env.GC_PROBE_FILE, JSON.stringify(process.memoryUsage()));
});

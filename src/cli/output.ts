// Issue 12 #2: output to a closed pipe (`cascade catalog | head -1`) ends quietly. Once the
// reader is gone nothing more can be said to it, so the command stops with status 0.
export function endQuietlyOnClosedPipe() {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

import { createInterface, type Interface } from 'node:readline/promises';
import { Writable } from 'node:stream';
import { badRequest } from '../core/errors.ts';

// Questions on stderr, answers from stdin. On a terminal a secret is read with echo off
// (node's readline writing to a muted stream: no dependency for a dozen lines); from a
// pipe, answers are read line by line, so a script can feed them (`printf 'pw\n' | cascade …`).

let piped: AsyncIterator<string> | null = null;
let pipedInterface: Interface | null = null;

/** The next line of a piped stdin: one reader for the whole process, so no buffered line is lost between questions. */
async function nextPipedLine(): Promise<string | undefined> {
  if (!piped) {
    pipedInterface = createInterface({ input: process.stdin, terminal: false });
    piped = pipedInterface[Symbol.asyncIterator]();
  }
  const { value, done } = await piped.next();
  return done ? undefined : value;
}

/** Lets the process end once its questions are answered, though stdin stays open. */
export function doneAsking() {
  pipedInterface?.close();
  pipedInterface = null;
  piped = null;
}

export async function ask(question: string, opts: { secret?: boolean } = {}): Promise<string> {
  if (!process.stdin.isTTY) {
    process.stderr.write(question);
    const line = await nextPipedLine();
    process.stderr.write('\n'); // the answer came from a pipe: nothing echoed it
    if (line === undefined) throw badRequest('missing_credentials', `No answer to "${question.trim()}" on standard input.`);
    return line.trim();
  }
  let muted = false;
  const output = new Writable({
    write(chunk, encoding, callback) {
      if (!muted) process.stderr.write(chunk, encoding);
      callback();
    },
  });
  const rl = createInterface({ input: process.stdin, output, terminal: true });
  // Ctrl-C at a prompt ends the command, as it would anywhere else (readline would only pause).
  rl.on('SIGINT', () => {
    rl.close();
    process.stderr.write('\n');
    process.exit(130);
  });
  try {
    process.stderr.write(question);
    muted = !!opts.secret;
    const answer = await rl.question('');
    if (muted) process.stderr.write('\n');
    return opts.secret ? answer : answer.trim();
  } finally {
    muted = false;
    rl.close();
  }
}

/** A new password, asked twice on a terminal (a typo there cannot be seen). */
export async function askNewPassword(question = 'new password: '): Promise<string> {
  const first = await ask(question, { secret: true });
  if (process.stdin.isTTY) {
    const again = await ask('again: ', { secret: true });
    if (again !== first) throw badRequest('passwords_differ', 'The two passwords differ; nothing changed.');
  }
  return first;
}

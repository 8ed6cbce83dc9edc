/**
 * `mqt-tz passwd [-c] [-b] [-D] [-U] FILE USER [PASSWORD]`: manages a password file as mosquitto_passwd
 * does, with the same flags and file format; new hashes are `$7$` PBKDF2-SHA512 with 210 000
 * iterations (mosquitto_passwd writes 101; mosquitto reads either).
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { formatHash, hashPassword, joinLines, parseHash, splitLines, type PasswdLine } from '../auth/password-file.js';

interface PasswdFlags {
  c?: boolean;
  b?: boolean;
  D?: boolean;
  U?: boolean;
}

class UsageError extends Error {}

/** Reads the password twice: hidden on a terminal, as two lines from a pipe. */
async function promptPassword(): Promise<string> {
  const tty = process.stdin.isTTY;
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: tty });
  // a pipe may deliver both lines in one read: keep every line until asked for
  const lines: string[] = [];
  let waiting: { resolve: (line: string) => void; reject: (err: Error) => void } | undefined;
  let closed = false;
  rl.on('line', (line) => {
    if (tty) process.stderr.write('\n');
    if (waiting) {
      waiting.resolve(line);
      waiting = undefined;
    } else lines.push(line);
  });
  rl.on('close', () => {
    closed = true;
    waiting?.reject(new UsageError('no password on standard input'));
  });
  const ask = (prompt: string): Promise<string> =>
    new Promise((resolve, reject) => {
      if (tty) {
        process.stderr.write(prompt);
        // hide what is typed: readline echoes through _writeToOutput
        (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput = () => undefined;
      }
      if (lines.length > 0) resolve(lines.shift()!);
      else if (closed) reject(new UsageError('no password on standard input'));
      else waiting = { resolve, reject };
    });
  try {
    const first = await ask('Password: ');
    const second = await ask('Reenter password: ');
    if (first !== second) throw new UsageError('passwords do not match');
    return first;
  } finally {
    rl.close();
  }
}

function readLines(file: string): PasswdLine[] {
  if (!existsSync(file)) throw new UsageError(`${file} does not exist (use -c to create it)`);
  return splitLines(readFileSync(file, 'utf8'));
}

/** Whole file replaced at once: a crash never leaves half a password file. */
function writeLines(file: string, lines: readonly PasswdLine[]): void {
  const temporary = `${file}.tmp-${process.pid}`;
  writeFileSync(temporary, joinLines(lines), { mode: 0o600 });
  renameSync(temporary, file);
}

function checkUser(user: string): void {
  if (user.length === 0 || user.includes(':') || /[\r\n]/.test(user)) throw new UsageError(`username may not be empty or contain ':' or a line break: ${JSON.stringify(user)}`);
}

export async function runPasswd(flags: PasswdFlags, file: string, user: string | undefined, password: string | undefined): Promise<string> {
  if (flags.U) {
    if (flags.c || flags.D || flags.b || user !== undefined) throw new UsageError('-U takes only the file');
    const lines = readLines(file);
    let updated = 0;
    for (const line of lines) {
      if ('text' in line || typeof parseHash(line.secret) !== 'string') continue;
      line.secret = formatHash(await hashPassword(line.secret));
      updated++;
    }
    writeLines(file, lines);
    return `hashed ${updated} plain-text password(s) in ${file}`;
  }
  if (user === undefined) throw new UsageError('missing USER');
  checkUser(user);
  if (flags.c && flags.D) throw new UsageError('-c and -D cannot be used together');
  if (flags.D) {
    if (password !== undefined) throw new UsageError('-D takes no password');
    const lines = readLines(file);
    const kept = lines.filter((l) => 'text' in l || l.user !== user);
    if (kept.length === lines.length) throw new UsageError(`user ${JSON.stringify(user)} not found in ${file}`);
    writeLines(file, kept);
    return `deleted ${user} from ${file}`;
  }
  if (flags.b && password === undefined) throw new UsageError('-b needs the password as the last argument');
  if (!flags.b && password !== undefined) throw new UsageError('a password on the command line needs -b');
  const lines = flags.c ? [] : readLines(file);
  const secret = formatHash(await hashPassword(password ?? (await promptPassword())));
  const existing = lines.find((l): l is { user: string; secret: string } => !('text' in l) && l.user === user);
  if (existing) existing.secret = secret;
  else lines.push({ user, secret });
  writeLines(file, lines);
  return `${existing ? 'updated' : 'added'} ${user} in ${file}`;
}

export function registerPasswdCommand(program: Command): void {
  program
    .command('passwd')
    .description('manage a mosquitto_passwd-compatible password file (PBKDF2-SHA512, 210 000 iterations)')
    .argument('<file>', 'password file')
    .argument('[user]', 'username')
    .argument('[password]', 'password (with -b)')
    .option('-c', 'create a new password file (overwrites an existing one)')
    .option('-b', 'batch mode: the password is given on the command line')
    .option('-D', 'delete the user')
    .option('-U', 'hash the plain-text passwords of a file (user:password lines)')
    .action(async (file: string, user: string | undefined, password: string | undefined, flags: PasswdFlags) => {
      try {
        process.stderr.write(`${await runPasswd(flags, file, user, password)}\n`);
      } catch (err) {
        if (!(err instanceof UsageError)) throw err;
        process.stderr.write(`mqt-tz passwd: ${err.message}\n`);
        process.exit(2);
      }
    });
}

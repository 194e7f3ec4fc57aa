/**
 * A tiny option parser shared by the subcommands: flags (`--force`), options
 * with a value (`--size 64M` or `--size=64M`), short aliases (`-f`), `--`
 * to end the options, and sizes with binary suffixes (512K, 64M, 1G, 4096).
 * Anything it does not know is a usage error: one line, never a guess.
 */
import { RmapfsError } from '../errors';

/** Where a command writes: one line at a time (tests collect them). */
export interface CommandIo {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Redraws a one-line status (a progress bar) in place; only when stderr is a terminal. */
  status?: (text: string) => void;
}

/** A subcommand: `rmapfs NAME ...`. */
export interface Command {
  name: string;
  /** One line for `rmapfs help`. */
  summary: string;
  /** The text of `rmapfs NAME --help`. */
  usage: string;
  /** Runs with the arguments after NAME; returns the exit status (errors may be thrown as RmapfsError/CliError). */
  run(argv: string[], io: CommandIo): Promise<number> | number;
}

/**
 * An error that carries the exit status the command should end with
 * (main.ts prints its line and returns the status).
 */
export class CliError extends RmapfsError {
  constructor(readonly status: number, code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'CliError';
  }
}

/** A usage or syntax error (exit 2, or the command's own usage status). */
export function usageError(message: string): CliError {
  return new CliError(2, 'EINVAL', message);
}

/** Gives an error the status the command wants for it (keeping its code and line). */
export function withStatus(e: unknown, status: number): unknown {
  if (e instanceof CliError) return e;
  if (e instanceof RmapfsError) return new CliError(status, e.code, e.message, { cause: e });
  return e;
}

export type OptionKind = 'flag' | 'value';

export interface OptionSpec {
  /** Long name without the dashes: "size" for --size. */
  name: string;
  kind: OptionKind;
  /** One-letter alias without the dash. */
  short?: string;
  /** May be given more than once (values accumulate); otherwise the last one wins. */
  repeat?: boolean;
}

export interface ParseOptions {
  /** Stop at the first positional argument: the rest are positionals, whatever they look like (db's commands). */
  stopAtPositional?: boolean;
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };

/** "4096", "512K", "64M", "1G", "2T" (also "64MiB", "64MB": binary either way); a usage error otherwise. */
export function parseSize(text: string, what = 'size'): number {
  const m = /^(\d+)([kmgtp]?)(?:i?b)?$/i.exec(text.trim());
  if (m === null) throw usageError(`bad ${what} '${text}' (want bytes, or a number with K, M, G or T)`);
  const n = Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!;
  if (!Number.isSafeInteger(n)) throw usageError(`${what} '${text}' is too large`);
  return n;
}

/** A non-negative integer (decimal or 0x hex); a usage error otherwise. */
export function parseCount(text: string, what: string): number {
  const t = text.trim();
  const n = /^\d+$/.test(t) ? Number(t) : /^0x[0-9a-f]+$/i.test(t) ? Number.parseInt(t.slice(2), 16) : NaN;
  if (!Number.isSafeInteger(n)) throw usageError(`bad ${what} '${text}' (want a whole number)`);
  return n;
}

/** 1.5 KiB, 64 MiB, 2.0 GiB... */
export function formatBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  if (u === 0) return `${n} bytes`;
  return `${Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1)} ${units[u]}`;
}

export class ParsedArgs {
  readonly positionals: string[] = [];
  private readonly values = new Map<string, string[]>();

  constructor(private readonly specs: readonly OptionSpec[]) {}

  /** @internal */
  add(name: string, value: string): void {
    const spec = this.specs.find((s) => s.name === name)!;
    const list = this.values.get(name) ?? [];
    if (spec.repeat === true) list.push(value);
    else list.splice(0, list.length, value);
    this.values.set(name, list);
  }

  has(name: string): boolean {
    this.spec(name);
    return this.values.has(name);
  }

  flag(name: string): boolean {
    return this.has(name);
  }

  string(name: string): string | undefined {
    this.spec(name);
    return this.values.get(name)?.[0];
  }

  strings(name: string): string[] {
    this.spec(name);
    return [...(this.values.get(name) ?? [])];
  }

  count(name: string): number | undefined {
    const v = this.string(name);
    return v === undefined ? undefined : parseCount(v, `--${name}`);
  }

  size(name: string): number | undefined {
    const v = this.string(name);
    return v === undefined ? undefined : parseSize(v, `--${name}`);
  }

  /** Exactly the positionals the command takes, by name for the messages. */
  expectPositionals(names: readonly string[], optional = 0): string[] {
    const min = names.length - optional;
    if (this.positionals.length < min) throw usageError(`missing ${names[this.positionals.length]} (see --help)`);
    if (this.positionals.length > names.length) {
      throw usageError(`unexpected argument '${this.positionals[names.length]}' (see --help)`);
    }
    return this.positionals;
  }

  private spec(name: string): OptionSpec {
    const s = this.specs.find((x) => x.name === name);
    if (s === undefined) throw new Error(`option --${name} was never declared`);
    return s;
  }
}

/**
 * Parses argv against the specs. `--help`/`-h` is always known (as the flag
 * "help"). Unknown options, missing values and values given to flags are
 * usage errors.
 */
export function parseArgs(argv: readonly string[], specs: readonly OptionSpec[], options: ParseOptions = {}): ParsedArgs {
  const all: OptionSpec[] = [...specs];
  if (!all.some((s) => s.name === 'help')) all.push({ name: 'help', kind: 'flag', short: 'h' });
  const out = new ParsedArgs(all);
  let i = 0;
  const take = (shown: string): string => {
    if (i + 1 >= argv.length) throw usageError(`option ${shown} needs a value`);
    i++;
    return argv[i]!;
  };
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      out.positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      const spec = all.find((s) => s.name === name);
      if (spec === undefined) throw usageError(`unknown option '--${name}' (see --help)`);
      if (spec.kind === 'flag') {
        if (eq >= 0) throw usageError(`option --${name} takes no value`);
        out.add(name, '');
      } else {
        out.add(name, eq >= 0 ? arg.slice(eq + 1) : take(`--${name}`));
      }
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1 && !/^-\d/.test(arg)) {
      // -f, -fv (flags), -s 64M, -s64M
      for (let j = 1; j < arg.length; j++) {
        const ch = arg[j]!;
        const spec = all.find((s) => s.short === ch);
        if (spec === undefined) throw usageError(`unknown option '-${ch}' (see --help)`);
        if (spec.kind === 'flag') {
          out.add(spec.name, '');
          continue;
        }
        out.add(spec.name, j + 1 < arg.length ? arg.slice(j + 1) : take(`-${ch}`));
        break;
      }
      continue;
    }
    if (options.stopAtPositional === true) {
      out.positionals.push(...argv.slice(i));
      break;
    }
    out.positionals.push(arg);
  }
  return out;
}

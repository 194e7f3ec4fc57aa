/**
 * The shared option parser: flags, --opt VALUE / --opt=VALUE, short options,
 * sizes, and one-line usage errors for anything unknown.
 */
import t from 'tap';
import type { Test } from 'tap';
import { CliError, formatBytes, parseArgs, parseCount, parseSize } from '../../src/cli/args';
import type { OptionSpec } from '../../src/cli/args';
import { commandsFromArgs, fuzzValue, splitCommandText } from '../../src/cli/db';

const specs: OptionSpec[] = [
  { name: 'size', kind: 'value', short: 's' },
  { name: 'force', kind: 'flag', short: 'f' },
  { name: 'verbose', kind: 'flag', short: 'v' },
  { name: 'command', kind: 'value', short: 'c', repeat: true },
];

function usageFailure(t: Test, fn: () => unknown, pattern: RegExp, what: string): void {
  try {
    fn();
    t.fail(`${what}: no error`);
  } catch (e) {
    t.ok(e instanceof CliError, `${what}: a CliError`);
    const ce = e as CliError;
    t.equal(ce.status, 2, `${what}: usage status`);
    t.equal(ce.code, 'EINVAL', `${what}: EINVAL`);
    t.match(ce.message, pattern, `${what}: ${ce.message}`);
    t.notOk(ce.message.includes('\n'), `${what}: one line`);
  }
}

t.test('sizes', (t) => {
  t.equal(parseSize('4096'), 4096);
  t.equal(parseSize('512K'), 512 * 1024);
  t.equal(parseSize('64M'), 64 << 20);
  t.equal(parseSize('64m'), 64 << 20);
  t.equal(parseSize('1G'), 1 << 30);
  t.equal(parseSize('2T'), 2 * 2 ** 40);
  t.equal(parseSize('16MiB'), 16 << 20);
  for (const bad of ['', '12Q', '-5', '1.5M', 'M', '10 M', '99999999999999999999']) {
    usageFailure(t, () => parseSize(bad), /size/, `size '${bad}'`);
  }
  t.equal(parseCount('12', 'n'), 12);
  t.equal(parseCount('0x10', 'n'), 16);
  usageFailure(t, () => parseCount('x', 'AG count'), /AG count/, 'count x');
  t.equal(formatBytes(16 << 20), '16 MiB');
  t.equal(formatBytes(1536), '1.5 KiB');
  t.equal(formatBytes(100), '100 bytes');
  t.end();
});

t.test('options', (t) => {
  const a = parseArgs(['--size', '64M', '-f', 'img'], specs);
  t.equal(a.size('size'), 64 << 20);
  t.ok(a.flag('force'));
  t.notOk(a.flag('verbose'));
  t.same(a.positionals, ['img']);
  t.same(parseArgs(['img', '--size=1G'], specs).size('size'), 1 << 30, '--opt=VALUE, after a positional');
  t.same(parseArgs(['-s512K', 'x'], specs).size('size'), 512 * 1024, '-sVALUE');
  t.same(parseArgs(['-fv', 'x'], specs).flag('verbose'), true, 'bundled flags');
  t.same(parseArgs(['-c', 'a', '--command=b', 'x'], specs).strings('command'), ['a', 'b'], 'repeatable');
  t.same(parseArgs(['--size', '1', '--size', '2'], specs).string('size'), '2', 'the last wins');
  t.same(parseArgs(['--', '--force'], specs).positionals, ['--force'], '-- ends the options');
  t.ok(parseArgs(['--help'], specs).flag('help'), '--help is always known');
  t.ok(parseArgs(['-h'], specs).flag('help'), '-h too');
  const stop = parseArgs(['-f', 'dev', 'records', '0', 'rmap', '--limit', '3'], specs, { stopAtPositional: true });
  t.same(stop.positionals, ['dev', 'records', '0', 'rmap', '--limit', '3'], 'stopAtPositional keeps the rest');
  t.same(parseArgs(['img'], specs).expectPositionals(['DEVICE']), ['img']);
  usageFailure(t, () => parseArgs(['--bogus'], specs), /unknown option '--bogus'/, 'unknown long');
  usageFailure(t, () => parseArgs(['-x'], specs), /unknown option '-x'/, 'unknown short');
  usageFailure(t, () => parseArgs(['--size'], specs), /needs a value/, 'missing value');
  usageFailure(t, () => parseArgs(['--force=yes'], specs), /takes no value/, 'flag with a value');
  usageFailure(t, () => parseArgs([], specs).expectPositionals(['DEVICE']), /missing DEVICE/, 'missing positional');
  usageFailure(t, () => parseArgs(['a', 'b'], specs).expectPositionals(['DEVICE']), /unexpected argument 'b'/, 'extra positional');
  t.end();
});

t.test('db command splitting', (t) => {
  t.same(commandsFromArgs(['sb']), [['sb']]);
  t.same(commandsFromArgs(['agh', '1']), [['agh', '1']], 'single words make one command');
  t.same(commandsFromArgs(['agh 1', 'btree 0 rmap']), [['agh', '1'], ['btree', '0', 'rmap']], 'an argument with spaces is a command');
  t.same(commandsFromArgs(['sb', 'agh 1', 'sb', '1']), [['sb'], ['agh', '1'], ['sb', '1']]);
  t.same(commandsFromArgs(['sb', ';', 'agh', '1']), [['sb'], ['agh', '1']], "';' separates");
  t.same(commandsFromArgs(['sb; agh 0']), [['sb'], ['agh', '0']], "';' inside an argument");
  t.same(splitCommandText(`set sb 0 label 'my disk'`), [['set', 'sb', '0', 'label', 'my disk']], 'quotes group');
  t.same(splitCommandText(`set sb 0 label ""`), [['set', 'sb', '0', 'label', '']], 'an empty quoted word');
  t.throws(() => splitCommandText(`set sb 0 label 'x`), /unterminated quote/);
  t.end();
});

t.test('fuzz verbs (xfs_db semantics)', (t) => {
  const v = 0x1234n;
  t.equal(fuzzValue('zeroes', v, 32), 0n);
  t.equal(fuzzValue('ones', v, 32), 0xffffffffn);
  t.equal(fuzzValue('ones', v, 16), 0xffffn);
  t.equal(fuzzValue('firstbit', v, 32), 0x80001234n, 'firstbit: the most significant');
  t.equal(fuzzValue('middlebit', v, 32), 0x1234n ^ 0x8000n, 'middlebit');
  t.equal(fuzzValue('middlebit', 0n, 16), 0x80n);
  t.equal(fuzzValue('lastbit', v, 32), 0x1235n, 'lastbit: the least significant');
  t.equal(fuzzValue('add', v, 32), 0x1235n);
  t.equal(fuzzValue('add', 0xffffffffn, 32), 0n, 'add wraps');
  t.equal(fuzzValue('sub', v, 32), 0x1233n);
  t.equal(fuzzValue('sub', 0n, 16), 0xffffn, 'sub wraps');
  for (let i = 0; i < 50; i++) {
    const r = fuzzValue('random', 1n, 1);
    if (r !== 0n) t.fail(`random on a 1-bit field must give the other value, gave ${r}`);
  }
  for (let i = 0; i < 20; i++) {
    const r = fuzzValue('random', v, 32);
    if (r === v || r > 0xffffffffn) t.fail(`random gave ${r}`);
  }
  t.throws(() => fuzzValue('bogus', v, 32), /unknown fuzz verb/);
  t.end();
});

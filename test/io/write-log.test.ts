/** The write log records a device's writes, flushes and marks, and rebuilds the device at any flush. */
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Device } from '../../src/io/device';
import { replayWriteLog, WriteLogReader, WriteLogRecorder, WLOG_FLUSH, WLOG_MARK, WLOG_WRITE } from '../../src/io/write-log';

function tmp(t: { teardown: (fn: () => void) => void }, name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rmapfs-wlog-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, name);
}

t.test('record, read back, replay to each flush point', (t) => {
  const image = tmp(t, 'dev.img');
  fs.writeFileSync(image, Buffer.alloc(64 * 4096));
  const base = `${image}.base`;
  fs.copyFileSync(image, base);
  const logPath = `${image}.wlog`;
  const device = new Device(image);
  const rec = new WriteLogRecorder(logPath, device.size);
  device.interpose(rec);
  device.write(0, Buffer.alloc(4096, 1), 0, 4096);
  device.write(8192, Buffer.alloc(8192, 2), 0, 8192);
  device.sync();
  rec.mark('after first flush');
  device.write(0, Buffer.alloc(4096, 3), 0, 4096);
  device.sync();
  device.write(4096, Buffer.alloc(4096, 4), 0, 4096); // never flushed
  device.close();
  rec.close();
  t.equal(rec.writes, 4);
  t.equal(rec.flushes, 2);

  const reader = new WriteLogReader(logPath);
  const kinds: number[] = [];
  for (let e = reader.next(); e !== null; e = reader.next()) kinds.push(e.kind);
  reader.close();
  t.same(kinds, [WLOG_WRITE, WLOG_WRITE, WLOG_FLUSH, WLOG_MARK, WLOG_WRITE, WLOG_FLUSH, WLOG_WRITE]);

  const at = (flushes: number): Buffer => {
    const copy = `${image}.at${flushes}`;
    fs.copyFileSync(base, copy);
    replayWriteLog(logPath, copy, (_e, p) => p.flushes === flushes);
    return fs.readFileSync(copy);
  };
  const first = at(1);
  t.equal(first[0], 1, 'flush 1: block 0 as first written');
  t.equal(first[8192 + 100], 2, 'flush 1: blocks 2-3 written');
  const second = at(2);
  t.equal(second[0], 3, 'flush 2: block 0 rewritten');
  t.equal(second[4096], 0, 'flush 2: the unflushed write is not there');
  const all = fs.readFileSync(base);
  const point = replayWriteLog(logPath, base);
  t.same(point, { entries: 7, flushes: 2, marks: ['after first flush'] }, 'a whole replay passes every entry');
  t.not(fs.readFileSync(base).equals(all), true);
  t.end();
});

t.test('a torn last entry ends the log; not a log is refused', (t) => {
  const logPath = tmp(t, 'torn.wlog');
  const rec = new WriteLogRecorder(logPath, 4096 * 4);
  rec.afterWrite(0, Buffer.alloc(4096, 9), 0, 4096);
  rec.afterSync();
  rec.afterWrite(4096, Buffer.alloc(4096, 9), 0, 4096);
  rec.close();
  fs.truncateSync(logPath, fs.statSync(logPath).size - 100);
  const reader = new WriteLogReader(logPath);
  let n = 0;
  while (reader.next() !== null) n++;
  reader.close();
  t.equal(n, 2, 'the torn write is not read');
  const junk = tmp(t, 'junk');
  fs.writeFileSync(junk, 'hello');
  t.throws(() => new WriteLogReader(junk), { code: 'EINVAL' });
  t.end();
});

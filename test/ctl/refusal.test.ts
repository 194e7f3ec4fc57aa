/**
 * A daemon-side refusal reaches the command with its errno name: a handler that refuses (EBUSY),
 * throws an RmapfsError (EROFS) or throws anything else (EIO) answers {ok: false, code, error}.
 */
import t from 'tap';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { RmapfsError } from '../../src/errors';
import { refusal, refusalError, startCtlServer } from '../../src/ctl/ctl';
import type { CtlReply } from '../../src/ctl/ctl';

/** One raw request over the socket (ctlRequest wants a real mount; the protocol is what is tested). */
function ask(sock: string, line: string): Promise<CtlReply> {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(sock, () => conn.write(`${line}\n`));
    let text = '';
    conn.setEncoding('utf8');
    conn.on('data', (chunk: string) => {
      text += chunk;
      const nl = text.indexOf('\n');
      if (nl >= 0) {
        conn.end();
        resolve(JSON.parse(text.slice(0, nl)) as CtlReply);
      }
    });
    conn.on('error', reject);
  });
}

t.test('refusals carry their errno name', async (t) => {
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rmapfs-ctl-'));
  const saved = process.env.RMAPFS_RUN_DIR;
  process.env.RMAPFS_RUN_DIR = runDir;
  const server = startCtlServer(path.join(runDir, 'mnt'), (req) => {
    if (req.cmd === 'busy') return refusal('EBUSY', 'a repair is already running on this filesystem');
    if (req.cmd === 'ro') throw new RmapfsError('EROFS', 'the filesystem is mounted read-only');
    if (req.cmd === 'bug') throw new Error('something broke');
    return { ok: true };
  });
  t.teardown(() => {
    server.close();
    if (saved === undefined) delete process.env.RMAPFS_RUN_DIR;
    else process.env.RMAPFS_RUN_DIR = saved;
    fs.rmSync(runDir, { recursive: true, force: true });
  });
  await new Promise<void>((resolve) => {
    const wait = (): void => (fs.existsSync(server.path) ? resolve() : void setTimeout(wait, 5));
    wait();
  });
  t.same(await ask(server.path, '{"cmd":"busy"}'), { ok: false, code: 'EBUSY', error: 'a repair is already running on this filesystem' });
  t.same(await ask(server.path, '{"cmd":"ro"}'), { ok: false, code: 'EROFS', error: 'the filesystem is mounted read-only' });
  t.same(await ask(server.path, '{"cmd":"bug"}'), { ok: false, code: 'EIO', error: 'something broke' });
  t.match(await ask(server.path, 'not json'), { ok: false, code: 'EINVAL' });
  t.same(await ask(server.path, '{"cmd":"fine"}'), { ok: true });
  const e = refusalError(await ask(server.path, '{"cmd":"ro"}'), 'ro');
  t.equal(e.code, 'EROFS', 'the command side rebuilds the error with its code');
  t.equal(e.errno, os.constants.errno.EROFS);
});

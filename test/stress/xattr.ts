/**
 * Extended attributes for fsstress. Node has no xattr API, so one python3
 * process per worker does the system calls (os.setxattr and friends), one
 * JSON request and reply per line. Without python3 the worker skips xattrs.
 */
import { spawn, spawnSync } from 'child_process';
import type { ChildProcessWithoutNullStreams } from 'child_process';
import * as readline from 'readline';

const HELPER = `
import errno, json, os, sys
for line in sys.stdin:
    r = json.loads(line)
    try:
        op, p = r['op'], r['path']
        if op == 'set':
            os.setxattr(p, r['name'], bytes.fromhex(r['value']), 0, follow_symlinks=False); out = {'ok': True}
        elif op == 'remove':
            os.removexattr(p, r['name'], follow_symlinks=False); out = {'ok': True}
        elif op == 'get':
            out = {'ok': True, 'value': os.getxattr(p, r['name'], follow_symlinks=False).hex()}
        else:
            out = {'ok': True, 'names': os.listxattr(p, follow_symlinks=False)}
    except OSError as e:
        out = {'ok': False, 'code': errno.errorcode.get(e.errno, 'EIO'), 'message': e.strerror or str(e)}
    sys.stdout.write(json.dumps(out) + '\\n')
    sys.stdout.flush()
`;

/** An errno from the helper, shaped like Node's fs errors (code + message). */
export class XattrError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

interface Reply {
  ok: boolean;
  code?: string;
  message?: string;
  value?: string;
  names?: string[];
}

export class XattrHelper {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly waiting: ((r: Reply) => void)[] = [];
  private dead: string | null = null;

  private constructor() {
    this.proc = spawn('python3', ['-c', HELPER], { stdio: ['pipe', 'pipe', 'pipe'] });
    const lines = readline.createInterface({ input: this.proc.stdout });
    lines.on('line', (line) => {
      const w = this.waiting.shift();
      if (w !== undefined) w(JSON.parse(line) as Reply);
    });
    this.proc.on('exit', (code) => {
      this.dead = `the xattr helper (python3) exited with status ${code}`;
      for (const w of this.waiting.splice(0)) w({ ok: false, code: 'EIO', message: this.dead });
    });
    this.proc.stderr.on('data', () => undefined);
  }

  /** A helper, or null with the reason when python3 cannot do xattrs here. */
  static start(): XattrHelper | string {
    const probe = spawnSync('python3', ['-c', 'import os; os.setxattr; os.listxattr'], { stdio: 'ignore' });
    if (probe.error !== undefined || probe.status !== 0) return 'python3 with os.setxattr is not available';
    return new XattrHelper();
  }

  private request(req: Record<string, unknown>): Promise<Reply> {
    if (this.dead !== null) return Promise.resolve({ ok: false, code: 'EIO', message: this.dead });
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.proc.stdin.write(`${JSON.stringify(req)}\n`);
    });
  }

  private static check(r: Reply): Reply {
    if (!r.ok) throw new XattrError(r.code ?? 'EIO', r.message ?? 'xattr call failed');
    return r;
  }

  async set(path: string, name: string, value: Buffer): Promise<void> {
    XattrHelper.check(await this.request({ op: 'set', path, name, value: value.toString('hex') }));
  }

  async remove(path: string, name: string): Promise<void> {
    XattrHelper.check(await this.request({ op: 'remove', path, name }));
  }

  async get(path: string, name: string): Promise<Buffer> {
    return Buffer.from(XattrHelper.check(await this.request({ op: 'get', path, name })).value ?? '', 'hex');
  }

  async list(path: string): Promise<string[]> {
    return XattrHelper.check(await this.request({ op: 'list', path })).names ?? [];
  }

  close(): void {
    this.proc.stdin.end();
  }
}

/**
 * fsstress's file model: random writes and truncates applied both to a
 * plain buffer and to the model (segments of write keys) give the same
 * bytes; a model survives its manifest (serialize, deserialize).
 */
import t from 'tap';
import { Rng, testSeed } from '../lib/rng';
import {
  deserialize, expectedContent, fillPattern, modelTruncate, modelWrite, patternBytes, serialize,
} from './model';
import type { DirNode, FileNode } from './model';

function newFile(id: number): FileNode {
  return { kind: 'file', id, size: 0, segs: [], links: [], xattrs: new Map(), tainted: false };
}

t.test('the pattern depends on the key and the file offset only', async (t) => {
  const a = patternBytes(1234, 100000, 300000);
  const b = Buffer.alloc(1000);
  fillPattern(b, 0, 1234, 100000 + 5000, 1000);
  t.ok(b.equals(a.subarray(5000, 6000)), 'a slice is the pattern at its own offset');
  t.notOk(patternBytes(1235, 0, 4096).equals(patternBytes(1234, 0, 4096)), 'another key, other bytes');
  t.notOk(patternBytes(1234, 4096, 4096).equals(patternBytes(1234, 0, 4096)), 'another offset, other bytes');
});

t.test('random writes and truncates: the model holds what a buffer holds', async (t) => {
  const seed = testSeed(4242);
  const rng = new Rng(seed);
  const max = 300000;
  for (let round = 0; round < 20; round++) {
    const f = newFile(round);
    let shadow = Buffer.alloc(0);
    for (let i = 0; i < 60; i++) {
      if (rng.int(4) === 0) {
        const size = rng.int(max);
        const grown = Buffer.alloc(size);
        shadow.copy(grown, 0, 0, Math.min(size, shadow.length));
        shadow = grown;
        modelTruncate(f, size);
      } else {
        const off = rng.int(max);
        const len = 1 + rng.int(20000);
        const key = Math.floor(rng.next() * 2 ** 32);
        if (off + len > shadow.length) {
          const grown = Buffer.alloc(off + len);
          shadow.copy(grown);
          shadow = grown;
        }
        fillPattern(shadow, off, key, off, len);
        modelWrite(f, off, len, key);
      }
      t.equal(f.size, shadow.length);
    }
    t.ok(expectedContent(f, 0, f.size).equals(shadow), `round ${round} (seed ${seed})`);
    for (let k = 1; k < f.segs.length; k++) {
      if (f.segs[k - 1]!.off + f.segs[k - 1]!.len > f.segs[k]!.off) t.fail('segments overlap');
    }
  }
});

t.test('a model survives the manifest, hard links included', async (t) => {
  const top: DirNode = { kind: 'dir', id: 0, parent: null, name: 'p0', entries: new Map(), xattrs: new Map(), tainted: false };
  const sub: DirNode = { kind: 'dir', id: 1, parent: top, name: 'd1', entries: new Map(), xattrs: new Map([['user.a', { key: 9, len: 5 }]]), tainted: false };
  top.entries.set('d1', sub);
  const f = newFile(2);
  modelWrite(f, 10, 100, 77);
  f.links.push({ dir: top, name: 'f' }, { dir: sub, name: 'l' });
  top.entries.set('f', f);
  sub.entries.set('l', f);
  sub.entries.set('s', { kind: 'symlink', id: 3, target: 'somewhere', parent: sub, name: 's' });
  const back = deserialize(JSON.parse(JSON.stringify(serialize(top))));
  t.same(serialize(back), serialize(top));
  const f2 = back.entries.get('f') as FileNode;
  t.equal(f2.links.length, 2, 'one file, two names');
  t.equal((back.entries.get('d1') as DirNode).entries.get('l'), f2);
  t.ok(expectedContent(f2, 0, f2.size).equals(expectedContent(f, 0, f.size)));
});

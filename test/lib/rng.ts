/** A small seedable PRNG (mulberry32), so a failing randomized test can be replayed. */
export class Rng {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

/** The seed for a test: $RMAPFS_SEED when set (to replay a failure), else the given default. */
export function testSeed(fallback: number): number {
  const env = process.env.RMAPFS_SEED;
  return env !== undefined && env !== '' ? Number(env) : fallback;
}

/**
 * Automatic repair (issue 16 item 2, `-o autoheal`): a structure that a
 * verifier or cross-check finds sick during normal operation is scheduled
 * for an online repair through the structure table -- the same repair as
 * `rmapfs repair --type T [--ag N | --inode N]`, its dependencies of the
 * same scope asked for too (the table's order rebuilds them first), paced
 * like any repair (it steps aside for FUSE requests).
 *
 * The operation that found the damage has had its error (EUCLEAN /
 * EBADMSG) already; nothing waits for the repair yet. Nothing repairs in a
 * loop: a structure is repaired automatically once per time it becomes
 * sick -- a repair that fails leaves it sick with why (health.ts), and only
 * a structure that became healthy (a scrub, a manual repair) and sick again
 * is scheduled again. Findings of a scrub or a repair's check are not
 * scheduled: whoever ran those decides (the patrol, item 3, will hand its
 * findings here).
 */
import createDebug from 'debug';
import type { HealthEvent, StructureName } from '../alloc/health';
import { structureFacts } from '../format/structures';

const log = createDebug('rmapfs:autoheal');

/**
 * How long after a first finding the repair starts: damage found by one
 * request is usually found by the next few too (a directory listing stats
 * every entry), and one repair takes them all.
 */
export const AUTOHEAL_DELAY_MS = 200;

/** One repair to run: as `rmapfs repair --type TYPES [--ag AG | --inode INO]` asks. */
export interface AutoHealTarget {
  types: StructureName[];
  ag: number | null;
  ino: number | null;
}

export interface AutoHealDeps {
  /** Whether automatic repair may run now (the option is on, the mount writable and not going away). */
  enabled(): boolean;
  /** Whether a repair (manual or automatic) is running: the next waits for `idle()`. */
  busy(): boolean;
  /** Runs the repair (marking the daemon busy until it ends). */
  repair(target: AutoHealTarget): Promise<unknown>;
}

/** The structure and its dependencies of the same scope, dependencies first (the table orders them anyway). */
function withDependencies(structure: StructureName): StructureName[] {
  const scope = structureFacts(structure).scope;
  const deps = structureFacts(structure).dependsOn.filter((d): d is StructureName => structureFacts(d as StructureName).scope === scope);
  return [...deps, structure];
}

export function targetOf(e: HealthEvent): AutoHealTarget {
  const types = withDependencies(e.structure);
  switch (e.place.kind) {
    case 'inode': return { types, ag: null, ino: e.place.ino };
    case 'ag': return { types, ag: e.place.agno, ino: null };
    default: return { types, ag: null, ino: null };
  }
}

function keyOf(e: HealthEvent): string {
  const p = e.place;
  return `${p.kind === 'inode' ? `i${p.ino}` : p.kind === 'ag' ? `a${p.agno}` : 'fs'}:${e.structure}`;
}

export class AutoHeal {
  /** Waiting repairs, by structure instance, in the order found. */
  private readonly queue = new Map<string, AutoHealTarget>();
  /** Structure instances repaired automatically since they last became sick: never again until healthy. */
  private readonly tried = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  /** How many automatic repairs were started since the mount (status). */
  started = 0;

  constructor(private readonly deps: AutoHealDeps, private readonly delayMs = AUTOHEAL_DELAY_MS) {}

  /** Hears every health change (alloc/health.ts HealthBus). */
  onHealth(e: HealthEvent): void {
    const key = keyOf(e);
    if (e.state === 'healthy') {
      this.tried.delete(key);
      this.queue.delete(key);
      return;
    }
    if (e.state !== 'sick' || e.was === 'sick' || e.how !== 'verifier' || e.repairFailed !== undefined) return;
    if (!this.deps.enabled() || this.tried.has(key) || this.queue.has(key)) return;
    log('scheduling a repair of %s', key);
    this.queue.set(key, targetOf(e));
    this.kick(this.delayMs);
  }

  /** A repair ended (manual or automatic): the next waiting one may start. */
  idle(): void {
    if (this.queue.size > 0) this.kick(0);
  }

  /** Unmount: nothing more starts. */
  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.queue.clear();
  }

  private kick(delayMs: number): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.runNext();
    }, delayMs);
    this.timer.unref();
  }

  private async runNext(): Promise<void> {
    if (this.running || this.deps.busy()) return; // idle() kicks again when it ends
    const first = this.queue.entries().next();
    if (first.done === true) return;
    const [key, target] = first.value;
    this.queue.delete(key);
    if (!this.deps.enabled()) {
      this.queue.clear();
      return;
    }
    this.tried.add(key);
    this.running = true;
    this.started++;
    try {
      await this.deps.repair(target);
    } catch (e) {
      log('automatic repair of %s failed: %s', key, e instanceof Error ? e.message : String(e));
    } finally {
      this.running = false;
    }
    if (this.queue.size > 0) this.kick(0);
  }
}

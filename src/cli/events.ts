/**
 * `rmapfs events [--json] MOUNTPOINT`: the daemon's health changes and
 * repairs as they happen (daemon/events.ts), a line each -- text, or one JSON
 * object a line -- until interrupted (exit 0) or the mount goes away (a line
 * saying so, exit 4).
 */
import { RmapfsError } from '../errors';
import { ctlRequest } from '../ctl/ctl';
import type { CtlEvent, CtlReply } from '../ctl/ctl';
import { daemonGoneMessage, findMount, mountpointDaemonGone } from '../io/mountinfo';
import { eventLine } from '../daemon/events';
import type { Command } from './args';
import { ONLINE_CLEAN, ONLINE_OPERATIONAL, mountpointArgument, onlineError, refused, runOnline } from './scrub';

const EVENTS_USAGE = `usage: rmapfs events [--json] MOUNTPOINT

Streams what happens to the health of a mounted filesystem's metadata, one
line each, as it happens: a structure found damaged (by a verifier during
normal operation, a scrub or a repair's check: where, when, while doing
what, and why), found or made healthy (a scrub, a repair), a repair that
failed, and each repair's start and end. The daemon writes the same lines
to syslog (tag rmapfs). Runs until interrupted (^C: exit 0).

options:
  --json       one JSON object a line: {event: "health", at, agno, ino?,
               structure, name, state, was, how, during, message,
               repairFailed?} or {event: "repair", at, phase, types, ag,
               ino, forceRebuild, automatic?, succeeded?,
               summary?, error?}

exit status: 0 interrupted, 4 the mount went away or is not an rmapfs mount
or its daemon cannot be reached (the line ends with the errno name), 8 usage.`;

/** The mount is no longer an rmapfs mount (unmounted, or its daemon gone). */
function mountGone(mountpoint: string): boolean {
  const entry = findMount(mountpoint);
  return entry === null || entry.fstype !== 'fuse.rmapfs';
}

export const eventsCommand: Command = {
  name: 'events',
  summary: 'stream the health changes and repairs of a mount',
  usage: EVENTS_USAGE,
  run(argv, io) {
    return runOnline(argv, io, [], EVENTS_USAGE, async (args, json) => {
      const mountpoint = mountpointArgument(args);
      // Interrupted is how a stream ends: cleanly.
      const interrupted = (): void => process.exit(ONLINE_CLEAN);
      process.once('SIGINT', interrupted);
      process.once('SIGTERM', interrupted);
      const onEvent = (e: CtlEvent): void => {
        if (e.event === 'subscribed') {
          io.err(`rmapfs events: watching ${mountpoint} (^C stops)`);
          return;
        }
        const { line: _line, ...fields } = e;
        io.out(json ? JSON.stringify(fields) : `${String(e.at)} ${eventLine(e)}`);
      };
      let reply: CtlReply;
      try {
        reply = await ctlRequest(mountpoint, { cmd: 'events' }, 0, onEvent);
      } catch (e) {
        if (!(e instanceof RmapfsError)) throw e;
        // The daemon exited before it could say so (an unmount, a crash): the connection just closed.
        if (mountGone(mountpoint) && e.code !== 'EINVAL') throw onlineError(new RmapfsError('ESHUTDOWN', `${mountpoint} was unmounted`), ONLINE_OPERATIONAL);
        // The daemon died (killed, crashed): the mount is still there, answering ENOTCONN.
        if (mountpointDaemonGone(mountpoint)) throw onlineError(new RmapfsError('ENOTCONN', daemonGoneMessage(mountpoint)), ONLINE_OPERATIONAL);
        throw onlineError(e, ONLINE_OPERATIONAL);
      } finally {
        process.removeListener('SIGINT', interrupted);
        process.removeListener('SIGTERM', interrupted);
      }
      if (!reply.ok) throw refused(reply, 'events');
      return ONLINE_CLEAN;
    });
  },
};

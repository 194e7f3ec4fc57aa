// rmapfs_fuse: a thin binding of the libfuse 2.9 *low-level* API
// (fuse_lowlevel_ops / fuse_reply_*) for Node. See src/fuse/lowlevel.ts for
// the typed contract; this file only moves requests and replies across.
//
// Two ways to get requests to JS (mount's `mode`):
//  - MODE_POLL (the default of src/fuse/lowlevel.ts): /dev/fuse is made
//    non-blocking and watched by a uv_poll on the Node event loop. Each
//    readable event reads and processes up to 64 requests right there, on
//    the JS thread, inside one callback scope; when the queue runs dry it
//    keeps reading for `spinUs` before going back to epoll, because a
//    synchronous caller's next request usually comes within microseconds
//    and waking an idle thread costs tens of them (bench/fuse-ll).
//  - MODE_THREAD / MODE_MT: fuse_session_loop (or _mt) on its own thread.
//    Each callback copies what it needs (names, the write data, the
//    numeric arguments, the caller's uid/gid/pid) into a heap Request and
//    hands it to ONE napi_threadsafe_function with a non-blocking call. The
//    FUSE thread never waits for JavaScript.
// Either way:
//  - The dispatcher is called with (op, id, name, name2, data); the numbers
//    are in a shared Float64Array ("in" scratch). The fuse_req_t stays in
//    C++, in a table keyed by a 53-bit id: JS answers with reply*(id, ...),
//    which looks the id up and erases it, so a second reply to one request
//    throws instead of touching freed memory.
//  - Attributes (entry/attr/create/statfs replies) travel the other way in a
//    second shared Float64Array ("out" scratch) that JS fills just before the
//    reply call: one N-API call per reply instead of a property read per
//    field. fuse_reply_* are thread-safe and copy before returning.
//  - When the kernel ends the connection (unmount, abort) the loop ends:
//    the requests JS never answered are freed, the session destroyed, JS is
//    told (op EXIT), and the tsfn / poll handle released so the process may
//    exit.
#define FUSE_USE_VERSION 26
#include <fuse_lowlevel.h>

#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <stdio.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

// Opcodes shared with src/fuse/lowlevel.ts (Op). Not the kernel's numbers:
// these index the handler table on the JS side.
enum Op : uint32_t {
  OP_EXIT = 0,
  OP_LOOKUP = 1,
  OP_FORGET = 2,
  OP_GETATTR = 3,
  OP_SETATTR = 4,
  OP_READLINK = 5,
  OP_MKNOD = 6,
  OP_MKDIR = 7,
  OP_UNLINK = 8,
  OP_RMDIR = 9,
  OP_SYMLINK = 10,
  OP_RENAME = 11,
  OP_LINK = 12,
  OP_OPEN = 13,
  OP_READ = 14,
  OP_WRITE = 15,
  OP_FLUSH = 16,
  OP_RELEASE = 17,
  OP_FSYNC = 18,
  OP_OPENDIR = 19,
  OP_READDIR = 20,
  OP_RELEASEDIR = 21,
  OP_FSYNCDIR = 22,
  OP_STATFS = 23,
  OP_SETXATTR = 24,
  OP_GETXATTR = 25,
  OP_LISTXATTR = 26,
  OP_REMOVEXATTR = 27,
  OP_ACCESS = 28,
  OP_CREATE = 29,
  OP_FALLOCATE = 30,
  OP_COUNT = 31,
};

// Layout of the "in" scratch (request numbers), mirrored in lowlevel.ts (In).
enum In : int {
  IN_INO = 0,      // ino, or the parent directory
  IN_INO2 = 1,     // newparent (rename, link)
  IN_FH = 2,       // fi->fh
  IN_OFFSET = 3,   // read/write/readdir/fallocate offset
  IN_SIZE = 4,     // read/readdir/xattr size, fallocate length
  IN_MODE = 5,     // mode (mknod, mkdir, create), fallocate mode
  IN_FLAGS = 6,    // open flags, setxattr flags, fsync datasync, access mask
  IN_UID = 7,      // caller (fuse_req_ctx)
  IN_GID = 8,
  IN_PID = 9,
  IN_UMASK = 10,
  IN_RDEV = 11,    // mknod
  IN_TO_SET = 12,  // setattr: FUSE_SET_ATTR_* bits
  IN_A_MODE = 13,  // setattr values
  IN_A_UID = 14,
  IN_A_GID = 15,
  IN_A_SIZE = 16,
  IN_A_ATIME = 17,
  IN_A_ATIME_NS = 18,
  IN_A_MTIME = 19,
  IN_A_MTIME_NS = 20,
  IN_HAS_FH = 21,  // 1 when fi was given (getattr/setattr may have none)
  IN_NLOOKUP = 22, // forget
  IN_COUNT = 24,
};

// Layout of the "out" scratch (reply numbers), mirrored in lowlevel.ts (Out).
enum Out : int {
  OUT_INO = 0,
  OUT_GENERATION = 1,
  OUT_ATTR_TIMEOUT = 2,
  OUT_ENTRY_TIMEOUT = 3,
  OUT_MODE = 4,
  OUT_NLINK = 5,
  OUT_UID = 6,
  OUT_GID = 7,
  OUT_RDEV = 8,
  OUT_SIZE = 9,
  OUT_BLOCKS = 10,
  OUT_BLKSIZE = 11,
  OUT_ATIME = 12,
  OUT_ATIME_NS = 13,
  OUT_MTIME = 14,
  OUT_MTIME_NS = 15,
  OUT_CTIME = 16,
  OUT_CTIME_NS = 17,
  OUT_COUNT = 24,
};
// statfs reuses the out scratch with its own layout.
enum OutStatfs : int {
  SF_BSIZE = 0,
  SF_FRSIZE = 1,
  SF_BLOCKS = 2,
  SF_BFREE = 3,
  SF_BAVAIL = 4,
  SF_FILES = 5,
  SF_FFREE = 6,
  SF_FAVAIL = 7,
  SF_FSID = 8,
  SF_FLAG = 9,
  SF_NAMEMAX = 10,
};

// replyOpen/replyCreate flag bits (OpenFlags in lowlevel.ts).
constexpr uint32_t OPEN_DIRECT_IO = 1;
constexpr uint32_t OPEN_KEEP_CACHE = 2;
constexpr uint32_t OPEN_NONSEEKABLE = 4;

// How the session reads /dev/fuse (mount's `mode` argument).
constexpr int MODE_THREAD = 0;  // fuse_session_loop on a thread, tsfn to JS
constexpr int MODE_MT = 1;      // fuse_session_loop_mt, tsfn to JS
constexpr int MODE_POLL = 2;    // a uv_poll on the fd: read and dispatch on the JS thread

struct Session;

// One request on its way from the FUSE thread to JS.
struct Request {
  Op op = OP_EXIT;
  fuse_req_t req = nullptr;  // null for forget (already answered) and exit
  size_t size = 0;           // kept with the pending entry (readdir, xattr)
  double in[IN_COUNT] = {};
  std::string name;
  std::string name2;
  char* data = nullptr;  // malloc'd copy (write, setxattr); freed by the Buffer
  size_t dataLen = 0;
  bool hasName = false;
  bool hasName2 = false;
  std::string error;  // exit: why the loop ended, when it was an error
};

struct Pending {
  fuse_req_t req;
  Session* session;
  size_t size;
};

// Per-environment state (one per Node isolate that loads the addon).
struct AddonData {
  Napi::Reference<Napi::Float64Array> inRef;
  Napi::Reference<Napi::Float64Array> outRef;
  double* in = nullptr;
  double* out = nullptr;
  std::unordered_map<uint64_t, Pending> pending;
  uint64_t nextId = 1;
};

struct Session {
  fuse_session* se = nullptr;
  fuse_chan* ch = nullptr;
  std::string mountpoint;
  std::thread thread;
  napi_threadsafe_function tsfn = nullptr;
  AddonData* addon = nullptr;
  int mode = 0;  // MODE_THREAD, MODE_MT or MODE_POLL
  // MODE_POLL: /dev/fuse read from the event loop itself.
  uv_poll_t* poll = nullptr;
  std::vector<char> recvBuf;
  uint64_t spinNs = 0;
  napi_env env = nullptr;
  napi_ref dispatchRef = nullptr;
  napi_ref resourceRef = nullptr;
  napi_async_context asyncCtx = nullptr;
  bool finished = false;  // EXIT processed: session destroyed
  int loopResult = 0;
  // The Session is shared by the tsfn and the External JS holds; whichever
  // lets go last deletes it (both on the JS thread).
  bool tsfnGone = false;
  bool externalGone = false;
};

// ---------------------------------------------------------------------------
// FUSE thread side

Session* SessionOf(fuse_req_t req) { return static_cast<Session*>(fuse_req_userdata(req)); }

Request* NewRequest(fuse_req_t req, Op op, fuse_ino_t ino) {
  Request* r = new (std::nothrow) Request();
  if (r == nullptr) return nullptr;
  r->op = op;
  r->req = req;
  r->in[IN_INO] = static_cast<double>(ino);
  const fuse_ctx* ctx = fuse_req_ctx(req);
  if (ctx != nullptr) {
    r->in[IN_UID] = ctx->uid;
    r->in[IN_GID] = ctx->gid;
    r->in[IN_PID] = ctx->pid;
    r->in[IN_UMASK] = ctx->umask;
  }
  return r;
}

void SetFi(Request* r, const fuse_file_info* fi) {
  if (fi == nullptr) return;
  r->in[IN_FH] = static_cast<double>(fi->fh);
  r->in[IN_FLAGS] = fi->flags;
  r->in[IN_HAS_FH] = 1;
}

void SetName(Request* r, const char* name) {
  if (name == nullptr) return;
  r->name.assign(name);
  r->hasName = true;
}

void SetName2(Request* r, const char* name) {
  if (name == nullptr) return;
  r->name2.assign(name);
  r->hasName2 = true;
}

bool CopyData(Request* r, const char* buf, size_t len) {
  // malloc(0) may return null: always ask for at least one byte.
  r->data = static_cast<char*>(malloc(len > 0 ? len : 1));
  if (r->data == nullptr) return false;
  if (len > 0) memcpy(r->data, buf, len);
  r->dataLen = len;
  return true;
}

void Deliver(Session* s, Request* r);

// Hands a request to JS; answers EIO (or ENOMEM) itself when that fails.
void Send(fuse_req_t req, Request* r) {
  if (r == nullptr) {
    if (req != nullptr) fuse_reply_err(req, ENOMEM);
    return;
  }
  Session* s = SessionOf(req);
  if (s->mode == MODE_POLL) {
    Deliver(s, r);
    return;
  }
  napi_status st = napi_call_threadsafe_function(s->tsfn, r, napi_tsfn_nonblocking);
  if (st != napi_ok) {
    if (r->req != nullptr) fuse_reply_err(r->req, EIO);
    free(r->data);
    delete r;
  }
}

void LlInit(void*, fuse_conn_info* conn) {
  // big_writes and max_write come from the options; ask for nothing else
  // the filesystem would have to honour (no atomic_o_trunc: truncation on
  // open arrives as a setattr).
  conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
}

void LlLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Request* r = NewRequest(req, OP_LOOKUP, parent);
  if (r) SetName(r, name);
  Send(req, r);
}

void LlForget(fuse_req_t req, fuse_ino_t ino, unsigned long nlookup) {
  // Nothing to answer: free the request now, tell JS afterwards.
  Session* s = SessionOf(req);
  Request* r = NewRequest(req, OP_FORGET, ino);
  fuse_reply_none(req);
  if (r == nullptr) return;
  r->req = nullptr;
  r->in[IN_NLOOKUP] = static_cast<double>(nlookup);
  if (s->mode == MODE_POLL) {
    Deliver(s, r);
    return;
  }
  if (napi_call_threadsafe_function(s->tsfn, r, napi_tsfn_nonblocking) != napi_ok) delete r;
}

void LlGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Request* r = NewRequest(req, OP_GETATTR, ino);
  if (r) SetFi(r, fi);
  Send(req, r);
}

double TimeSec(const timespec& ts) { return static_cast<double>(ts.tv_sec); }

void LlSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  Request* r = NewRequest(req, OP_SETATTR, ino);
  if (r) {
    SetFi(r, fi);
    r->in[IN_TO_SET] = to_set;
    r->in[IN_A_MODE] = attr->st_mode;
    r->in[IN_A_UID] = attr->st_uid;
    r->in[IN_A_GID] = attr->st_gid;
    r->in[IN_A_SIZE] = static_cast<double>(attr->st_size);
    r->in[IN_A_ATIME] = TimeSec(attr->st_atim);
    r->in[IN_A_ATIME_NS] = static_cast<double>(attr->st_atim.tv_nsec);
    r->in[IN_A_MTIME] = TimeSec(attr->st_mtim);
    r->in[IN_A_MTIME_NS] = static_cast<double>(attr->st_mtim.tv_nsec);
  }
  Send(req, r);
}

void LlReadlink(fuse_req_t req, fuse_ino_t ino) { Send(req, NewRequest(req, OP_READLINK, ino)); }

void LlMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  Request* r = NewRequest(req, OP_MKNOD, parent);
  if (r) {
    SetName(r, name);
    r->in[IN_MODE] = mode;
    r->in[IN_RDEV] = static_cast<double>(rdev);
  }
  Send(req, r);
}

void LlMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  Request* r = NewRequest(req, OP_MKDIR, parent);
  if (r) {
    SetName(r, name);
    r->in[IN_MODE] = mode;
  }
  Send(req, r);
}

void LlUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Request* r = NewRequest(req, OP_UNLINK, parent);
  if (r) SetName(r, name);
  Send(req, r);
}

void LlRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Request* r = NewRequest(req, OP_RMDIR, parent);
  if (r) SetName(r, name);
  Send(req, r);
}

void LlSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  Request* r = NewRequest(req, OP_SYMLINK, parent);
  if (r) {
    SetName(r, name);
    SetName2(r, link);
  }
  Send(req, r);
}

void LlRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname) {
  Request* r = NewRequest(req, OP_RENAME, parent);
  if (r) {
    SetName(r, name);
    SetName2(r, newname);
    r->in[IN_INO2] = static_cast<double>(newparent);
  }
  Send(req, r);
}

void LlLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  Request* r = NewRequest(req, OP_LINK, ino);
  if (r) {
    SetName(r, newname);
    r->in[IN_INO2] = static_cast<double>(newparent);
  }
  Send(req, r);
}

void LlOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Request* r = NewRequest(req, OP_OPEN, ino);
  if (r) SetFi(r, fi);
  Send(req, r);
}

void LlRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Request* r = NewRequest(req, OP_READ, ino);
  if (r) {
    SetFi(r, fi);
    r->in[IN_SIZE] = static_cast<double>(size);
    r->in[IN_OFFSET] = static_cast<double>(off);
  }
  Send(req, r);
}

void LlWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  Request* r = NewRequest(req, OP_WRITE, ino);
  if (r) {
    SetFi(r, fi);
    r->in[IN_SIZE] = static_cast<double>(size);
    r->in[IN_OFFSET] = static_cast<double>(off);
    // The loop reuses its receive buffer for the next request: copy.
    if (!CopyData(r, buf, size)) {
      delete r;
      r = nullptr;
    }
  }
  Send(req, r);
}

void LlFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Request* r = NewRequest(req, OP_FLUSH, ino);
  if (r) SetFi(r, fi);
  Send(req, r);
}

void LlRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Request* r = NewRequest(req, OP_RELEASE, ino);
  if (r) SetFi(r, fi);
  Send(req, r);
}

void LlFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  Request* r = NewRequest(req, OP_FSYNC, ino);
  if (r) {
    SetFi(r, fi);
    r->in[IN_FLAGS] = datasync;
  }
  Send(req, r);
}

void LlOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Request* r = NewRequest(req, OP_OPENDIR, ino);
  if (r) SetFi(r, fi);
  Send(req, r);
}

void LlReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Request* r = NewRequest(req, OP_READDIR, ino);
  if (r) {
    SetFi(r, fi);
    r->in[IN_SIZE] = static_cast<double>(size);
    r->in[IN_OFFSET] = static_cast<double>(off);
    r->size = size;
  }
  Send(req, r);
}

void LlReleasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Request* r = NewRequest(req, OP_RELEASEDIR, ino);
  if (r) SetFi(r, fi);
  Send(req, r);
}

void LlFsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  Request* r = NewRequest(req, OP_FSYNCDIR, ino);
  if (r) {
    SetFi(r, fi);
    r->in[IN_FLAGS] = datasync;
  }
  Send(req, r);
}

void LlStatfs(fuse_req_t req, fuse_ino_t ino) { Send(req, NewRequest(req, OP_STATFS, ino)); }

void LlSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags) {
  Request* r = NewRequest(req, OP_SETXATTR, ino);
  if (r) {
    SetName(r, name);
    r->in[IN_FLAGS] = flags;
    r->in[IN_SIZE] = static_cast<double>(size);
    if (!CopyData(r, value, size)) {
      delete r;
      r = nullptr;
    }
  }
  Send(req, r);
}

void LlGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Request* r = NewRequest(req, OP_GETXATTR, ino);
  if (r) {
    SetName(r, name);
    r->in[IN_SIZE] = static_cast<double>(size);
    r->size = size;
  }
  Send(req, r);
}

void LlListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Request* r = NewRequest(req, OP_LISTXATTR, ino);
  if (r) {
    r->in[IN_SIZE] = static_cast<double>(size);
    r->size = size;
  }
  Send(req, r);
}

void LlRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Request* r = NewRequest(req, OP_REMOVEXATTR, ino);
  if (r) SetName(r, name);
  Send(req, r);
}

void LlAccess(fuse_req_t req, fuse_ino_t ino, int mask) {
  Request* r = NewRequest(req, OP_ACCESS, ino);
  if (r) r->in[IN_FLAGS] = mask;
  Send(req, r);
}

void LlCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  Request* r = NewRequest(req, OP_CREATE, parent);
  if (r) {
    SetFi(r, fi);
    SetName(r, name);
    r->in[IN_MODE] = mode;
  }
  Send(req, r);
}

void LlFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, fuse_file_info* fi) {
  Request* r = NewRequest(req, OP_FALLOCATE, ino);
  if (r) {
    SetFi(r, fi);
    r->in[IN_MODE] = mode;
    r->in[IN_OFFSET] = static_cast<double>(offset);
    r->in[IN_SIZE] = static_cast<double>(length);
  }
  Send(req, r);
}

// Only the operations JS handles are filled in: for the others libfuse's
// own default answer applies (ENOSYS for most, which also tells the kernel
// to stop asking, e.g. for flush, fsync, access, getxattr).
fuse_lowlevel_ops BuildOps(uint32_t mask) {
  fuse_lowlevel_ops ops;
  memset(&ops, 0, sizeof ops);
  ops.init = LlInit;
  auto has = [mask](Op op) { return (mask & (1u << op)) != 0; };
  if (has(OP_LOOKUP)) ops.lookup = LlLookup;
  if (has(OP_FORGET)) ops.forget = LlForget;
  if (has(OP_GETATTR)) ops.getattr = LlGetattr;
  if (has(OP_SETATTR)) ops.setattr = LlSetattr;
  if (has(OP_READLINK)) ops.readlink = LlReadlink;
  if (has(OP_MKNOD)) ops.mknod = LlMknod;
  if (has(OP_MKDIR)) ops.mkdir = LlMkdir;
  if (has(OP_UNLINK)) ops.unlink = LlUnlink;
  if (has(OP_RMDIR)) ops.rmdir = LlRmdir;
  if (has(OP_SYMLINK)) ops.symlink = LlSymlink;
  if (has(OP_RENAME)) ops.rename = LlRename;
  if (has(OP_LINK)) ops.link = LlLink;
  if (has(OP_OPEN)) ops.open = LlOpen;
  if (has(OP_READ)) ops.read = LlRead;
  if (has(OP_WRITE)) ops.write = LlWrite;
  if (has(OP_FLUSH)) ops.flush = LlFlush;
  if (has(OP_RELEASE)) ops.release = LlRelease;
  if (has(OP_FSYNC)) ops.fsync = LlFsync;
  if (has(OP_OPENDIR)) ops.opendir = LlOpendir;
  if (has(OP_READDIR)) ops.readdir = LlReaddir;
  if (has(OP_RELEASEDIR)) ops.releasedir = LlReleasedir;
  if (has(OP_FSYNCDIR)) ops.fsyncdir = LlFsyncdir;
  if (has(OP_STATFS)) ops.statfs = LlStatfs;
  if (has(OP_SETXATTR)) ops.setxattr = LlSetxattr;
  if (has(OP_GETXATTR)) ops.getxattr = LlGetxattr;
  if (has(OP_LISTXATTR)) ops.listxattr = LlListxattr;
  if (has(OP_REMOVEXATTR)) ops.removexattr = LlRemovexattr;
  if (has(OP_ACCESS)) ops.access = LlAccess;
  if (has(OP_CREATE)) ops.create = LlCreate;
  if (has(OP_FALLOCATE)) ops.fallocate = LlFallocate;
  return ops;
}

void LoopThread(Session* s) {
  s->loopResult = s->mode == MODE_MT ? fuse_session_loop_mt(s->se) : fuse_session_loop(s->se);
  Request* r = new (std::nothrow) Request();
  if (r == nullptr) return;  // cannot happen in practice; JS would never learn of the exit
  r->op = OP_EXIT;
  if (s->loopResult != 0) r->error = "fuse_session_loop failed";
  if (napi_call_threadsafe_function(s->tsfn, r, napi_tsfn_blocking) != napi_ok) delete r;
}

// ---------------------------------------------------------------------------
// JS thread side

void FreeData(Napi::Env, char* data) { free(data); }

// Ends a session whose loop has returned: joins the thread, frees what JS
// never answered (the connection is gone: the replies go nowhere), unmounts
// if the kernel still has us, destroys the session.
void Finish(Session* s) {
  if (s->finished) return;
  s->finished = true;
  if (s->thread.joinable()) s->thread.join();
  AddonData* a = s->addon;
  for (auto it = a->pending.begin(); it != a->pending.end();) {
    if (it->second.session == s) {
      fuse_reply_err(it->second.req, EIO);
      it = a->pending.erase(it);
    } else {
      ++it;
    }
  }
  // fuse_unmount closes the channel; it only unmounts when the connection
  // is still alive (it polls the fd for POLLERR first).
  fuse_session_remove_chan(s->ch);
  fuse_unmount(s->mountpoint.c_str(), s->ch);
  fuse_session_destroy(s->se);
  s->se = nullptr;
  s->ch = nullptr;
}

// Calls the JS dispatcher with (op, id, name, name2, data) and the numbers
// in the in scratch. Consumes r.
void CallDispatch(napi_env env, napi_value jsDispatch, Session* s, Request* r) {
  Napi::Env e(env);
  Napi::HandleScope scope(e);
  AddonData* a = s->addon;
  uint64_t id = 0;
  if (r->req != nullptr) {
    id = a->nextId++;
    a->pending.emplace(id, Pending{r->req, s, r->size});
  }
  memcpy(a->in, r->in, sizeof r->in);
  napi_value argv[5];
  argv[0] = Napi::Number::New(e, r->op);
  argv[1] = Napi::Number::New(e, static_cast<double>(id));
  argv[2] = r->hasName ? Napi::String::New(e, r->name) : e.Undefined();
  argv[3] = r->hasName2 ? Napi::String::New(e, r->name2) : e.Undefined();
  if (r->op == OP_EXIT && !r->error.empty()) argv[2] = Napi::String::New(e, r->error);
  if (r->data != nullptr) {
    // Handed over to the Buffer, which frees it when collected (or copied
    // and freed at once where external buffers are not allowed).
    argv[4] = Napi::Buffer<char>::NewOrCopy(e, r->data, r->dataLen, FreeData);
    r->data = nullptr;
  } else {
    argv[4] = e.Undefined();
  }
  delete r;
  napi_value result;
  napi_status st = napi_call_function(env, e.Undefined(), jsDispatch, 5, argv, &result);
  if (st == napi_pending_exception && s->mode == MODE_POLL) {
    // No N-API frame above us to rethrow into: report it as uncaught.
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  // With the tsfn, N-API itself reports an exception escaping the
  // dispatcher as uncaught. Either way the request stays unanswered.
}

// MODE_POLL: a request read on the JS thread goes straight to JS.
void Deliver(Session* s, Request* r) {
  napi_value fn;
  if (napi_get_reference_value(s->env, s->dispatchRef, &fn) != napi_ok || fn == nullptr) {
    if (r->req != nullptr) fuse_reply_err(r->req, EIO);
    free(r->data);
    delete r;
    return;
  }
  CallDispatch(s->env, fn, s, r);
}

void CallJs(napi_env env, napi_value jsDispatch, void* context, void* data) {
  Request* r = static_cast<Request*>(data);
  Session* s = static_cast<Session*>(context);
  if (env == nullptr || jsDispatch == nullptr || s->finished) {
    // The tsfn is being torn down (or the session ended): nobody will answer.
    if (r->req != nullptr && !s->finished) fuse_reply_err(r->req, EIO);
    free(r->data);
    delete r;
    return;
  }
  if (r->op == OP_EXIT) {
    Finish(s);
    CallDispatch(env, jsDispatch, s, r);
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_release);
    return;
  }
  CallDispatch(env, jsDispatch, s, r);
}

void ClosePoll(uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); }

// MODE_POLL: /dev/fuse is readable. Reads and handles what is queued (a
// bounded batch, so the event loop stays responsive), all inside one
// callback scope: microtasks run once, after the batch.
void OnReadable(uv_poll_t* handle, int status, int) {
  Session* s = static_cast<Session*>(handle->data);
  if (s->finished) return;
  napi_env env = s->env;
  napi_handle_scope hs;
  napi_open_handle_scope(env, &hs);
  napi_value resource;
  napi_get_reference_value(env, s->resourceRef, &resource);
  napi_callback_scope cs;
  napi_open_callback_scope(env, resource, s->asyncCtx, &cs);
  bool ended = status < 0 && status != UV_EAGAIN;
  // When the queue is empty, keep reading for up to spinNs before going
  // back to epoll: a synchronous caller's next request usually comes within
  // microseconds, and being woken from idle costs far more than that on a
  // small (virtual) machine.
  uint64_t spinUntil = 0;
  for (int i = 0; i < 64 && !ended; i++) {
    fuse_chan* ch = s->ch;
    int res = fuse_chan_recv(&ch, s->recvBuf.data(), s->recvBuf.size());
    if (res == -EAGAIN) {
      if (s->spinNs == 0) break;
      uint64_t t = uv_hrtime();
      if (spinUntil == 0) spinUntil = t + s->spinNs;
      if (t >= spinUntil) break;
      i--;  // spinning does not count against the batch
      continue;
    }
    spinUntil = 0;
    if (res == -EINTR) continue;
    if (res <= 0) {  // 0: ENODEV, the kernel ended the connection
      if (res < 0) s->loopResult = res;
      ended = true;
      break;
    }
    fuse_session_process(s->se, s->recvBuf.data(), static_cast<size_t>(res), ch);
    if (fuse_session_exited(s->se)) ended = true;
  }
  if (ended) {
    uv_poll_stop(s->poll);
    uv_close(reinterpret_cast<uv_handle_t*>(s->poll), ClosePoll);
    s->poll = nullptr;
    Finish(s);
    Request* r = new Request();
    r->op = OP_EXIT;
    if (s->loopResult != 0) r->error = "reading /dev/fuse failed";
    Deliver(s, r);
    napi_delete_reference(env, s->dispatchRef);
    s->dispatchRef = nullptr;
  }
  napi_close_callback_scope(env, cs);
  napi_close_handle_scope(env, hs);
  if (ended) {
    napi_async_destroy(env, s->asyncCtx);
    s->asyncCtx = nullptr;
    napi_delete_reference(env, s->resourceRef);
    s->resourceRef = nullptr;
    s->tsfnGone = true;  // MODE_POLL has no tsfn: only the External keeps s
    if (s->externalGone) delete s;
  }
}

void FinalizeTsfn(napi_env, void* finalizeData, void*) {
  Session* s = static_cast<Session*>(finalizeData);
  if (!s->finished) {
    // The environment is going away while still mounted (process exit):
    // the loop thread may be blocked in read(2) for good, so neither join
    // it nor free what it uses. The kernel ends the connection when the
    // process closes /dev/fuse.
    if (s->thread.joinable()) s->thread.detach();
    return;
  }
  s->tsfnGone = true;
  if (s->externalGone) delete s;
}

void FinalizeExternal(Napi::Env, Session* s) {
  s->externalGone = true;
  if (s->tsfnGone) delete s;
}

AddonData* Data(const Napi::Env& env) { return env.GetInstanceData<AddonData>(); }

// libfuse reports why a mount failed only on stderr ("fuse: mountpoint is not
// empty", "fuse: failed to open /dev/fuse: Permission denied"). A background
// daemon's stderr goes nowhere, so while fuse_mount / fuse_lowlevel_new run,
// fd 2 is a pipe and what they print becomes the error message instead.
class StderrCapture {
 public:
  StderrCapture() {
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return;
    fflush(stderr);
    saved_ = dup(2);
    if (saved_ < 0 || dup2(p[1], 2) < 0) {
      if (saved_ >= 0) close(saved_);
      saved_ = -1;
      close(p[0]);
      close(p[1]);
      return;
    }
    close(p[1]);
    read_ = p[0];
  }
  // Puts stderr back and returns what was written meanwhile (at most one pipe's worth).
  std::string Finish() {
    std::string text;
    if (saved_ < 0) return text;
    fflush(stderr);
    dup2(saved_, 2);
    close(saved_);
    saved_ = -1;
    char buf[4096];
    ssize_t n;
    while ((n = read(read_, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
    close(read_);
    read_ = -1;
    return text;
  }
  ~StderrCapture() { Finish(); }

 private:
  int saved_ = -1;
  int read_ = -1;
};

// "fuse: a\nfuse: b\n" -> "a; b" (empty: the fallback).
std::string FuseMessage(const std::string& captured, const std::string& fallback) {
  std::string out;
  size_t pos = 0;
  while (pos < captured.size()) {
    size_t nl = captured.find('\n', pos);
    std::string line = captured.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? captured.size() : nl + 1;
    if (line.rfind("fuse: ", 0) == 0) line = line.substr(6);
    if (line.empty()) continue;
    if (!out.empty()) out += "; ";
    out += line;
  }
  return out.empty() ? fallback : out;
}

// mount(mountpoint, options, dispatch, opMask, mode, spinUs) -> session
Napi::Value Mount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 6 || !info[0].IsString() || !info[1].IsString() || !info[2].IsFunction() ||
      !info[3].IsNumber() || !info[4].IsNumber() || !info[5].IsNumber()) {
    throw Napi::TypeError::New(env, "mount(mountpoint, options, dispatch, opMask, mode, spinUs)");
  }
  std::string mnt = info[0].As<Napi::String>().Utf8Value();
  std::string opts = info[1].As<Napi::String>().Utf8Value();
  uint32_t mask = info[3].As<Napi::Number>().Uint32Value();

  std::vector<std::string> argStore = {"rmapfs"};
  if (!opts.empty()) {
    argStore.push_back("-o");
    argStore.push_back(opts);
  }
  std::vector<char*> argv;
  for (auto& a : argStore) argv.push_back(&a[0]);
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  StderrCapture capture;
  fuse_chan* ch = fuse_mount(mnt.c_str(), &args);
  if (ch == nullptr) {
    fuse_opt_free_args(&args);
    throw Napi::Error::New(env, FuseMessage(capture.Finish(), "fuse_mount failed for " + mnt));
  }
  Session* s = new Session();
  s->mountpoint = mnt;
  s->ch = ch;
  s->addon = Data(env);
  s->mode = static_cast<int>(info[4].As<Napi::Number>().Int32Value());
  if (s->mode < MODE_THREAD || s->mode > MODE_POLL) s->mode = MODE_THREAD;
  fuse_lowlevel_ops ops = BuildOps(mask);
  s->se = fuse_lowlevel_new(&args, &ops, sizeof ops, s);
  fuse_opt_free_args(&args);
  std::string libfuseSaid = capture.Finish();
  if (s->se == nullptr) {
    fuse_unmount(mnt.c_str(), ch);
    delete s;
    throw Napi::Error::New(env, FuseMessage(libfuseSaid, "fuse_lowlevel_new failed (bad option?) for " + mnt));
  }
  if (!libfuseSaid.empty()) fputs(libfuseSaid.c_str(), stderr);  // warnings of a mount that worked
  fuse_session_add_chan(s->se, ch);

  if (s->mode == MODE_POLL) {
    s->env = env;
    int fd = fuse_chan_fd(ch);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    s->recvBuf.resize(fuse_chan_bufsize(ch));
    double spinUs = info[5].As<Napi::Number>().DoubleValue();
    s->spinNs = spinUs > 0 && spinUs < 1e6 ? static_cast<uint64_t>(spinUs * 1000) : 0;
    napi_create_reference(env, info[2], 1, &s->dispatchRef);
    Napi::Object resource = Napi::Object::New(env);
    napi_create_reference(env, resource, 1, &s->resourceRef);
    napi_async_init(env, resource, Napi::String::New(env, "rmapfs_fuse"), &s->asyncCtx);
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    s->poll = new uv_poll_t();
    s->poll->data = s;
    if (loop == nullptr || uv_poll_init(loop, s->poll, fd) != 0 ||
        uv_poll_start(s->poll, UV_READABLE, OnReadable) != 0) {
      throw Napi::Error::New(env, "cannot poll /dev/fuse");  // leaks the session: cannot happen in practice
    }
    return Napi::External<Session>::New(env, s, FinalizeExternal);
  }

  napi_value name = Napi::String::New(env, "rmapfs_fuse");
  napi_status st = napi_create_threadsafe_function(env, info[2], nullptr, name, 0, 1, s, FinalizeTsfn, s, CallJs,
                                                   &s->tsfn);
  if (st != napi_ok) {
    fuse_session_remove_chan(ch);
    fuse_unmount(mnt.c_str(), ch);
    fuse_session_destroy(s->se);
    delete s;
    throw Napi::Error::New(env, "napi_create_threadsafe_function failed");
  }

  // Signals belong to the Node thread: the loop thread starts with all blocked.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  try {
    s->thread = std::thread(LoopThread, s);
  } catch (const std::exception& ex) {
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    s->finished = true;
    fuse_session_remove_chan(ch);
    fuse_unmount(mnt.c_str(), ch);
    fuse_session_destroy(s->se);
    s->externalGone = true;  // no External was made: the tsfn finalizer deletes s
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
    throw Napi::Error::New(env, std::string("cannot start the FUSE thread: ") + ex.what());
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return Napi::External<Session>::New(env, s, FinalizeExternal);
}

// unmount(session) -> 0 or errno. A lazy umount2(2): the loop ends (and
// EXIT is dispatched) once the kernel drops the connection, i.e. when the
// last user of the mount lets go. Never waits, so the JS thread stays free
// to answer the requests that may still arrive until then. EPERM (not
// root) leaves it to the caller to run fusermount -uz.
Napi::Value Unmount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal()) throw Napi::TypeError::New(env, "unmount(session)");
  Session* s = info[0].As<Napi::External<Session>>().Data();
  if (s->finished) return Napi::Number::New(env, 0);
  int rc = umount2(s->mountpoint.c_str(), MNT_DETACH);
  return Napi::Number::New(env, rc == 0 ? 0 : errno);
}

// pending(session) -> bool: a request waits on /dev/fuse (poll mode only: the
// event loop has not read it yet). Lets background work on the JS thread
// (online scrub, repair) step aside at once for the foreground.
Napi::Value RequestWaiting(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal()) throw Napi::TypeError::New(env, "pending(session)");
  Session* s = info[0].As<Napi::External<Session>>().Data();
  if (s->finished || s->poll == nullptr || s->ch == nullptr) return Napi::Boolean::New(env, false);
  struct pollfd p = {fuse_chan_fd(s->ch), POLLIN, 0};
  return Napi::Boolean::New(env, poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0);
}

// Looks up and forgets a pending request; throws when it is not pending
// (already answered, or its session has ended).
Pending Take(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "request id expected");
  AddonData* a = Data(env);
  uint64_t id = static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue());
  auto it = a->pending.find(id);
  if (it == a->pending.end()) {
    throw Napi::Error::New(env, "FUSE request " + std::to_string(id) + " is not pending (answered twice?)");
  }
  Pending p = it->second;
  a->pending.erase(it);
  return p;
}

double Arg(const Napi::CallbackInfo& info, size_t i, double dflt = 0) {
  return info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().DoubleValue() : dflt;
}

Napi::Value Result(const Napi::Env& env, int rc) { return Napi::Number::New(env, rc); }

// The out scratch as a struct stat (st_ino from OUT_INO).
void FillStat(const double* o, struct stat* st) {
  memset(st, 0, sizeof *st);
  st->st_ino = static_cast<ino_t>(o[OUT_INO]);
  st->st_mode = static_cast<mode_t>(o[OUT_MODE]);
  st->st_nlink = static_cast<nlink_t>(o[OUT_NLINK]);
  st->st_uid = static_cast<uid_t>(o[OUT_UID]);
  st->st_gid = static_cast<gid_t>(o[OUT_GID]);
  st->st_rdev = static_cast<dev_t>(o[OUT_RDEV]);
  st->st_size = static_cast<off_t>(o[OUT_SIZE]);
  st->st_blocks = static_cast<blkcnt_t>(o[OUT_BLOCKS]);
  st->st_blksize = static_cast<blksize_t>(o[OUT_BLKSIZE]);
  st->st_atim.tv_sec = static_cast<time_t>(o[OUT_ATIME]);
  st->st_atim.tv_nsec = static_cast<long>(o[OUT_ATIME_NS]);
  st->st_mtim.tv_sec = static_cast<time_t>(o[OUT_MTIME]);
  st->st_mtim.tv_nsec = static_cast<long>(o[OUT_MTIME_NS]);
  st->st_ctim.tv_sec = static_cast<time_t>(o[OUT_CTIME]);
  st->st_ctim.tv_nsec = static_cast<long>(o[OUT_CTIME_NS]);
}

void FillEntry(const double* o, fuse_entry_param* e) {
  memset(e, 0, sizeof *e);
  e->ino = static_cast<fuse_ino_t>(o[OUT_INO]);
  e->generation = static_cast<unsigned long>(o[OUT_GENERATION]);
  e->attr_timeout = o[OUT_ATTR_TIMEOUT];
  e->entry_timeout = o[OUT_ENTRY_TIMEOUT];
  FillStat(o, &e->attr);
}

void FillFi(uint32_t flags, double fh, fuse_file_info* fi) {
  memset(fi, 0, sizeof *fi);
  fi->fh = static_cast<uint64_t>(fh);
  fi->direct_io = (flags & OPEN_DIRECT_IO) != 0;
  fi->keep_cache = (flags & OPEN_KEEP_CACHE) != 0;
  fi->nonseekable = (flags & OPEN_NONSEEKABLE) != 0;
}

// replyErr(id, errno): errno 0 is success for the operations answered by
// status alone (unlink, setxattr, flush, ...).
Napi::Value ReplyErr(const Napi::CallbackInfo& info) {
  Pending p = Take(info);
  return Result(info.Env(), fuse_reply_err(p.req, static_cast<int>(Arg(info, 1, EIO))));
}

Napi::Value ReplyNone(const Napi::CallbackInfo& info) {
  Pending p = Take(info);
  fuse_reply_none(p.req);
  return Result(info.Env(), 0);
}

// replyEntry(id): entry from the out scratch (ino 0: a negative entry).
Napi::Value ReplyEntry(const Napi::CallbackInfo& info) {
  Pending p = Take(info);
  fuse_entry_param e;
  FillEntry(p.session->addon->out, &e);
  return Result(info.Env(), fuse_reply_entry(p.req, &e));
}

// replyCreate(id, fh, openFlags): entry from the out scratch.
Napi::Value ReplyCreate(const Napi::CallbackInfo& info) {
  Pending p = Take(info);
  fuse_entry_param e;
  FillEntry(p.session->addon->out, &e);
  fuse_file_info fi;
  FillFi(static_cast<uint32_t>(Arg(info, 2)), Arg(info, 1), &fi);
  return Result(info.Env(), fuse_reply_create(p.req, &e, &fi));
}

// replyAttr(id): attributes and OUT_ATTR_TIMEOUT from the out scratch.
Napi::Value ReplyAttr(const Napi::CallbackInfo& info) {
  Pending p = Take(info);
  const double* o = p.session->addon->out;
  struct stat st;
  FillStat(o, &st);
  return Result(info.Env(), fuse_reply_attr(p.req, &st, o[OUT_ATTR_TIMEOUT]));
}

Napi::Value ReplyReadlink(const Napi::CallbackInfo& info) {
  Pending p = Take(info);
  if (info.Length() < 2 || !info[1].IsString()) {
    fuse_reply_err(p.req, EIO);
    throw Napi::TypeError::New(info.Env(), "replyReadlink(id, target)");
  }
  std::string target = info[1].As<Napi::String>().Utf8Value();
  return Result(info.Env(), fuse_reply_readlink(p.req, target.c_str()));
}

// replyOpen(id, fh, openFlags)
Napi::Value ReplyOpen(const Napi::CallbackInfo& info) {
  Pending p = Take(info);
  fuse_file_info fi;
  FillFi(static_cast<uint32_t>(Arg(info, 2)), Arg(info, 1), &fi);
  return Result(info.Env(), fuse_reply_open(p.req, &fi));
}

Napi::Value ReplyWrite(const Napi::CallbackInfo& info) {
  Pending p = Take(info);
  return Result(info.Env(), fuse_reply_write(p.req, static_cast<size_t>(Arg(info, 1))));
}

// replyBuf(id, buffer[, offset, length]): the bytes are sent (copied into
// the kernel) before this returns.
Napi::Value ReplyBuf(const Napi::CallbackInfo& info) {
  Pending p = Take(info);
  if (info.Length() < 2 || !info[1].IsTypedArray()) {
    fuse_reply_err(p.req, EIO);
    throw Napi::TypeError::New(info.Env(), "replyBuf(id, buffer, offset?, length?)");
  }
  Napi::Uint8Array b = info[1].As<Napi::Uint8Array>();
  size_t total = b.ByteLength();
  size_t off = static_cast<size_t>(Arg(info, 2, 0));
  if (off > total) off = total;
  size_t len = static_cast<size_t>(Arg(info, 3, static_cast<double>(total - off)));
  if (len > total - off) len = total - off;
  return Result(info.Env(), fuse_reply_buf(p.req, reinterpret_cast<const char*>(b.Data()) + off, len));
}

Napi::Value ReplyStatfs(const Napi::CallbackInfo& info) {
  Pending p = Take(info);
  const double* o = p.session->addon->out;
  struct statvfs sv;
  memset(&sv, 0, sizeof sv);
  sv.f_bsize = static_cast<unsigned long>(o[SF_BSIZE]);
  sv.f_frsize = static_cast<unsigned long>(o[SF_FRSIZE]);
  sv.f_blocks = static_cast<fsblkcnt_t>(o[SF_BLOCKS]);
  sv.f_bfree = static_cast<fsblkcnt_t>(o[SF_BFREE]);
  sv.f_bavail = static_cast<fsblkcnt_t>(o[SF_BAVAIL]);
  sv.f_files = static_cast<fsfilcnt_t>(o[SF_FILES]);
  sv.f_ffree = static_cast<fsfilcnt_t>(o[SF_FFREE]);
  sv.f_favail = static_cast<fsfilcnt_t>(o[SF_FAVAIL]);
  sv.f_fsid = static_cast<unsigned long>(o[SF_FSID]);
  sv.f_flag = static_cast<unsigned long>(o[SF_FLAG]);
  sv.f_namemax = static_cast<unsigned long>(o[SF_NAMEMAX]);
  return Result(info.Env(), fuse_reply_statfs(p.req, &sv));
}

Napi::Value ReplyXattr(const Napi::CallbackInfo& info) {
  Pending p = Take(info);
  return Result(info.Env(), fuse_reply_xattr(p.req, static_cast<size_t>(Arg(info, 1))));
}

// replyReaddir(id, entries, start): entries[start..] as {name, ino, mode,
// off} (off: the offset of the entry after this one), packed with
// fuse_add_direntry until the request's size is full. Returns how many
// were sent.
Napi::Value ReplyReaddir(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pending p = Take(info);
  if (info.Length() < 2 || !info[1].IsArray()) {
    fuse_reply_err(p.req, EIO);
    throw Napi::TypeError::New(env, "replyReaddir(id, entries, start?)");
  }
  Napi::Array entries = info[1].As<Napi::Array>();
  uint32_t n = entries.Length();
  uint32_t start = static_cast<uint32_t>(Arg(info, 2, 0));
  std::vector<char> buf(p.size > 0 ? p.size : 1);
  size_t used = 0;
  uint32_t sent = 0;
  Napi::String kName = Napi::String::New(env, "name");
  Napi::String kIno = Napi::String::New(env, "ino");
  Napi::String kMode = Napi::String::New(env, "mode");
  Napi::String kOff = Napi::String::New(env, "off");
  try {
    for (uint32_t i = start; i < n; i++) {
      Napi::Value v = entries.Get(i);
      if (!v.IsObject()) continue;
      Napi::Object ent = v.As<Napi::Object>();
      std::string name = ent.Get(kName).ToString().Utf8Value();
      struct stat st;
      memset(&st, 0, sizeof st);
      st.st_ino = static_cast<ino_t>(ent.Get(kIno).ToNumber().DoubleValue());
      st.st_mode = static_cast<mode_t>(ent.Get(kMode).ToNumber().Uint32Value());
      off_t off = static_cast<off_t>(ent.Get(kOff).ToNumber().DoubleValue());
      size_t need = fuse_add_direntry(p.req, buf.data() + used, p.size - used, name.c_str(), &st, off);
      if (need > p.size - used) break;
      used += need;
      sent++;
    }
  } catch (...) {
    fuse_reply_err(p.req, EIO);  // an entry's getter threw: still answer once
    throw;
  }
  fuse_reply_buf(p.req, buf.data(), used);
  return Napi::Number::New(env, sent);
}

// watchMounts(callback) -> stop(): calls back (on the JS thread) whenever the
// mount table of this process's namespace changes -- a mount, an unmount, a
// remount. The kernel flags /proc/self/mountinfo with POLLPRI on every change
// (poll resets it), so this costs nothing while nothing changes.
struct MountWatch {
  uv_poll_t poll;
  int fd = -1;
  napi_env env = nullptr;
  napi_ref callback = nullptr;
  bool stopped = false;
};

void OnMountsChanged(uv_poll_t* handle, int status, int events) {
  MountWatch* w = static_cast<MountWatch*>(handle->data);
  if (w->stopped) return;
  Napi::Env env(w->env);
  Napi::HandleScope scope(env);
  napi_value cb;
  napi_get_reference_value(w->env, w->callback, &cb);
  napi_value global;
  napi_get_global(w->env, &global);
  napi_value ignored;
  // An exception in the callback is Node's to report (uncaught); the watch goes on.
  if (napi_make_callback(w->env, nullptr, global, cb, 0, nullptr, &ignored) != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(w->env, &pending);
    if (pending) {
      napi_value err;
      napi_get_and_clear_last_exception(w->env, &err);
      napi_fatal_exception(w->env, err);
    }
  }
  (void)status;
  (void)events;
}

Napi::Value WatchMounts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(env, "watchMounts(callback)");
  int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Napi::Error::New(env, std::string("cannot open /proc/self/mountinfo: ") + strerror(errno));
  MountWatch* w = new MountWatch();
  w->fd = fd;
  w->env = env;
  napi_create_reference(env, info[0], 1, &w->callback);
  w->poll.data = w;
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  if (loop == nullptr || uv_poll_init(loop, &w->poll, fd) != 0 ||
      uv_poll_start(&w->poll, UV_PRIORITIZED, OnMountsChanged) != 0) {
    close(fd);
    napi_delete_reference(env, w->callback);
    delete w;
    throw Napi::Error::New(env, "cannot watch /proc/self/mountinfo");
  }
  // stop(): idempotent; the handle (and the file) go once libuv has closed it.
  return Napi::Function::New(env, [w](const Napi::CallbackInfo& ci) -> Napi::Value {
    if (!w->stopped) {
      w->stopped = true;
      napi_delete_reference(ci.Env(), w->callback);
      uv_poll_stop(&w->poll);
      uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), [](uv_handle_t* h) {
        MountWatch* mw = static_cast<MountWatch*>(h->data);
        close(mw->fd);
        delete mw;
      });
    }
    return ci.Env().Undefined();
  }, "stopWatchingMounts");
}

// Scratch arrays and ids live per environment.
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  AddonData* a = new AddonData();
  Napi::Float64Array in = Napi::Float64Array::New(env, IN_COUNT);
  Napi::Float64Array out = Napi::Float64Array::New(env, OUT_COUNT);
  a->inRef = Napi::Persistent(in);
  a->outRef = Napi::Persistent(out);
  a->in = in.Data();
  a->out = out.Data();
  env.SetInstanceData(a);
  exports.Set("inScratch", in);
  exports.Set("outScratch", out);
  exports.Set("mount", Napi::Function::New(env, Mount, "mount"));
  exports.Set("unmount", Napi::Function::New(env, Unmount, "unmount"));
  exports.Set("pending", Napi::Function::New(env, RequestWaiting, "pending"));
  exports.Set("watchMounts", Napi::Function::New(env, WatchMounts, "watchMounts"));
  exports.Set("replyErr", Napi::Function::New(env, ReplyErr, "replyErr"));
  exports.Set("replyNone", Napi::Function::New(env, ReplyNone, "replyNone"));
  exports.Set("replyEntry", Napi::Function::New(env, ReplyEntry, "replyEntry"));
  exports.Set("replyCreate", Napi::Function::New(env, ReplyCreate, "replyCreate"));
  exports.Set("replyAttr", Napi::Function::New(env, ReplyAttr, "replyAttr"));
  exports.Set("replyReadlink", Napi::Function::New(env, ReplyReadlink, "replyReadlink"));
  exports.Set("replyOpen", Napi::Function::New(env, ReplyOpen, "replyOpen"));
  exports.Set("replyWrite", Napi::Function::New(env, ReplyWrite, "replyWrite"));
  exports.Set("replyBuf", Napi::Function::New(env, ReplyBuf, "replyBuf"));
  exports.Set("replyStatfs", Napi::Function::New(env, ReplyStatfs, "replyStatfs"));
  exports.Set("replyXattr", Napi::Function::New(env, ReplyXattr, "replyXattr"));
  exports.Set("replyReaddir", Napi::Function::New(env, ReplyReaddir, "replyReaddir"));
  return exports;
}

}  // namespace

NODE_API_MODULE(rmapfs_fuse, Init)

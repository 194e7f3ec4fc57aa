// rmapfs_fuse: a thin binding of the libfuse 3 *low-level* session API
// (fuse_session_* / fuse_lowlevel_ops / fuse_reply_*) for Node. See
// src/fuse/lowlevel.ts for the typed contract; this file only moves requests
// and replies across.
//
// The session's /dev/fuse fd is made non-blocking and watched by a uv_poll on
// the Node event loop. Each readable event reads (fuse_session_receive_buf)
// and processes (fuse_session_process_buf) up to 64 requests right there, on
// the JS thread, inside one callback scope; when the queue runs dry it keeps
// reading for `spinUs` before going back to epoll, because a synchronous
// caller's next request usually comes within microseconds and waking an idle
// thread costs tens of them (bench/fuse-ll). No other thread ever touches the
// session.
//  - The dispatcher is called with (op, id, name, name2, data); the numbers
//    are in a shared Float64Array ("in" scratch). The fuse_req_t stays in
//    C++, in a table keyed by a 53-bit id: JS answers with reply*(id, ...),
//    which looks the id up and erases it, so a second reply to one request
//    throws instead of touching freed memory.
//  - Attributes (entry/attr/create/statfs replies) travel the other way in a
//    second shared Float64Array ("out" scratch) that JS fills just before the
//    reply call: one N-API call per reply instead of a property read per
//    field.
//  - The opcode and scratch-slot numbers are shared with lowlevel.ts, which
//    checks them at load against the tables this addon exports (`tables`).
//  - When the kernel ends the connection (unmount, abort) the loop ends: the
//    requests JS never answered are answered EIO, the session unmounted (a
//    no-op when the kernel already let go) and destroyed, JS is told (op
//    EXIT), and the poll handle released so the process may exit.
//  - With killpriv_v2 the session reads and writes /dev/fuse through our own
//    read and writev (KillprivIo): they pass everything through, noting a few
//    fields of the kernel's requests and adding one flag to INIT's reply.
#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/uio.h>
#include <stdio.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

// Each enum shared with src/fuse/lowlevel.ts is written once, as an X-macro:
// it makes both the C++ enum and the table exported for the check at load.

// Opcodes (lowlevel.ts Op). Not the kernel's numbers: these index the
// handler table on the JS side.
#define RMAPFS_OPS(X) \
  X(EXIT, 0) X(LOOKUP, 1) X(FORGET, 2) X(GETATTR, 3) X(SETATTR, 4) X(READLINK, 5) X(MKNOD, 6) X(MKDIR, 7) \
  X(UNLINK, 8) X(RMDIR, 9) X(SYMLINK, 10) X(RENAME, 11) X(LINK, 12) X(OPEN, 13) X(READ, 14) X(WRITE, 15) \
  X(FLUSH, 16) X(RELEASE, 17) X(FSYNC, 18) X(OPENDIR, 19) X(READDIR, 20) X(RELEASEDIR, 21) X(FSYNCDIR, 22) \
  X(STATFS, 23) X(SETXATTR, 24) X(GETXATTR, 25) X(LISTXATTR, 26) X(REMOVEXATTR, 27) X(ACCESS, 28) \
  X(CREATE, 29) X(FALLOCATE, 30) X(LSEEK, 31) X(READDIRPLUS, 32) X(IOCTL, 33) X(COPY_FILE_RANGE, 34)

// Slots of the "in" scratch (request numbers; lowlevel.ts In).
//  INO: ino, or the parent directory; INO2: newparent (rename, link); FH: fi->fh;
//  OFFSET: read/write/readdir/fallocate/lseek offset; SIZE: read/readdir/xattr size,
//  fallocate length; MODE: mode (mknod, mkdir, create), fallocate mode; FLAGS:
//  open flags, setxattr flags, fsync datasync, access mask, rename flags, lseek
//  whence;
//  UID/GID/PID/UMASK: the caller (fuse_req_ctx); RDEV: mknod; TO_SET: setattr's
//  FUSE_SET_ATTR_* bits, A_*: its values (A_CTIME: the writeback cache's
//  FUSE_SET_ATTR_CTIME); HAS_FH: 1 when fi was given
//  (getattr/setattr may have none); NLOOKUP: forget.
//  copy_file_range: INO/FH/OFFSET the source, INO2/FH2/OFFSET2 the destination,
//  SIZE the length, FLAGS its flags. ioctl: IOCTL_CMD the command, FLAGS the
//  FUSE_IOCTL_* bits, SIZE out_bufsz; the in buffer is the data.
//  KERNEL_FLAGS (write, setattr; only while killpriv_v2 is granted): the request's own flags as
//  the kernel sent them, which libfuse 3.14 does not pass on -- WRITE's write_flags, SETATTR's
//  valid (FUSE_WRITE_KILL_SUIDGID, FATTR_KILL_SUIDGID).
#define RMAPFS_IN_SLOTS(X) \
  X(INO, 0) X(INO2, 1) X(FH, 2) X(OFFSET, 3) X(SIZE, 4) X(MODE, 5) X(FLAGS, 6) X(UID, 7) X(GID, 8) X(PID, 9) \
  X(UMASK, 10) X(RDEV, 11) X(TO_SET, 12) X(A_MODE, 13) X(A_UID, 14) X(A_GID, 15) X(A_SIZE, 16) X(A_ATIME, 17) \
  X(A_ATIME_NS, 18) X(A_MTIME, 19) X(A_MTIME_NS, 20) X(HAS_FH, 21) X(NLOOKUP, 22) X(FH2, 23) X(OFFSET2, 24) \
  X(IOCTL_CMD, 25) X(A_CTIME, 26) X(A_CTIME_NS, 27) X(KERNEL_FLAGS, 28)

// Slots of the "out" scratch (reply numbers; lowlevel.ts Out).
#define RMAPFS_OUT_SLOTS(X) \
  X(INO, 0) X(GENERATION, 1) X(ATTR_TIMEOUT, 2) X(ENTRY_TIMEOUT, 3) X(MODE, 4) X(NLINK, 5) X(UID, 6) X(GID, 7) \
  X(RDEV, 8) X(SIZE, 9) X(BLOCKS, 10) X(BLKSIZE, 11) X(ATIME, 12) X(ATIME_NS, 13) X(MTIME, 14) X(MTIME_NS, 15) \
  X(CTIME, 16) X(CTIME_NS, 17)

// statfs reuses the out scratch with its own layout (lowlevel.ts OutStatfs).
#define RMAPFS_STATFS_SLOTS(X) \
  X(BSIZE, 0) X(FRSIZE, 1) X(BLOCKS, 2) X(BFREE, 3) X(BAVAIL, 4) X(FILES, 5) X(FFREE, 6) X(FAVAIL, 7) \
  X(FSID, 8) X(FLAG, 9) X(NAMEMAX, 10)

#define RMAPFS_ENUM_OP(name, n) OP_##name = n,
#define RMAPFS_ENUM_IN(name, n) IN_##name = n,
#define RMAPFS_ENUM_OUT(name, n) OUT_##name = n,
#define RMAPFS_ENUM_SF(name, n) SF_##name = n,
enum Op : uint32_t { RMAPFS_OPS(RMAPFS_ENUM_OP) };
enum In : int { RMAPFS_IN_SLOTS(RMAPFS_ENUM_IN) };
enum Out : int { RMAPFS_OUT_SLOTS(RMAPFS_ENUM_OUT) };
enum OutStatfs : int { RMAPFS_STATFS_SLOTS(RMAPFS_ENUM_SF) };
#undef RMAPFS_ENUM_OP
#undef RMAPFS_ENUM_IN
#undef RMAPFS_ENUM_OUT
#undef RMAPFS_ENUM_SF
constexpr int IN_COUNT = 32;   // scratch lengths: room to spare beyond the last slot
constexpr int OUT_COUNT = 24;
// JS names the handled ops in a mask passed as a double (BuildOps): 53 bits at most.
static_assert(OP_COPY_FILE_RANGE < 53, "the handler mask is a double's 53 bits");
static_assert(IN_NLOOKUP < IN_COUNT && IN_KERNEL_FLAGS < IN_COUNT && OUT_CTIME_NS < OUT_COUNT && SF_NAMEMAX < OUT_COUNT, "scratch too small");

// replyOpen/replyCreate flag bits (OpenFlags in lowlevel.ts).
constexpr uint32_t OPEN_DIRECT_IO = 1;
constexpr uint32_t OPEN_KEEP_CACHE = 2;
constexpr uint32_t OPEN_NONSEEKABLE = 4;

// The few numbers of the kernel's protocol (linux/fuse.h; libfuse 3 does not install its
// fuse_kernel.h) that KillprivIo reads and writes: opcodes, the flag, and byte offsets of the
// fields in fuse_in_header (40 bytes) / fuse_out_header (16) and the request/reply bodies after them.
constexpr uint32_t kFuseSetattr = 4;
constexpr uint32_t kFuseWrite = 16;
constexpr uint32_t kFuseInit = 26;
constexpr uint32_t kHandleKillprivV2 = 1u << 28;  // fuse_init_in/out.flags
constexpr size_t kInHeaderSize = 40;             // opcode at 4, unique at 8
constexpr size_t kOutHeaderSize = 16;            // error at 4, unique at 8
constexpr size_t kInitFlagsAt = 12;              // fuse_init_in and fuse_init_out: major, minor, max_readahead, flags
constexpr size_t kWriteFlagsAt = 20;             // fuse_write_in: fh, offset, size, write_flags
constexpr size_t kSetattrValidAt = 0;            // fuse_setattr_in: valid first

struct Session;

// One request on its way to JS: lives on the stack of the libfuse callback,
// which calls JS synchronously, so names point into libfuse's receive buffer.
struct Request {
  Op op = OP_EXIT;
  fuse_req_t req = nullptr;  // null for forget (already answered) and exit
  size_t size = 0;           // kept with the pending entry (readdir, xattr)
  double in[IN_COUNT] = {};
  const char* name = nullptr;
  const char* name2 = nullptr;
  const char* data = nullptr;  // write, setxattr: copied into a Buffer JS owns
  size_t dataLen = 0;
  bool hasData = false;
  const char* error = nullptr;  // exit: why the loop ended, when it was an error
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

// From the -o options, applied in init: max_write (0: libfuse's own, 1 MiB),
// max_read (must equal the max_read= mount option libfuse checks it against)
// and writeback_cache / no_writeback_cache (off unless asked for: the daemon
// asks by default, a bare session -- bench/fuse-ll -- does not).
struct ConnOptions {
  unsigned maxWrite = 0;
  unsigned maxRead = 0;
  int posixAcl = 0;  // posix_acl: ask for FUSE_CAP_POSIX_ACL (with FUSE_CAP_DONT_MASK)
  int writebackCache = 0;
  int killprivV2 = 0;  // killpriv_v2: answer INIT with FUSE_HANDLE_KILLPRIV_V2 (see KillprivIo)
};

struct Session {
  fuse_session* se = nullptr;
  AddonData* addon = nullptr;
  uv_poll_t* poll = nullptr;
  fuse_buf buf = {};  // libfuse allocates buf.mem (its own bufsize) at the first receive
  uint64_t spinNs = 0;
  std::string mountpoint;
  ConnOptions conn;
  bool readdirplus = false;  // JS handles READDIRPLUS: ask the kernel for it at INIT
  napi_env env = nullptr;
  napi_ref dispatchRef = nullptr;
  napi_ref resourceRef = nullptr;
  napi_async_context asyncCtx = nullptr;
  bool finished = false;  // EXIT processed: session destroyed
  bool posixAclGranted = false;  // INIT gave FUSE_CAP_POSIX_ACL and FUSE_CAP_DONT_MASK
  // killpriv_v2 (KillprivIo): the INIT request's unique while its reply is awaited (0: none; read
  // by notifications from the writeBack worker thread too), whether the kernel offered the flag,
  // whether our reply carried it; and the kernel's flags of the request being processed.
  std::atomic<uint64_t> initUnique{0};
  bool killprivOffered = false;
  bool killprivGranted = false;
  uint32_t requestOpcode = 0;
  uint32_t requestKernelFlags = 0;
  int loopResult = 0;
  // The Session is shared by the poll handle and the External JS holds;
  // whichever lets go last deletes it (both on the JS thread).
  bool pollGone = false;
  bool externalGone = false;
};

// ---------------------------------------------------------------------------
// Requests: libfuse's callbacks, on the JS thread (inside OnReadable)

Session* SessionOf(fuse_req_t req) { return static_cast<Session*>(fuse_req_userdata(req)); }

void Start(Request& r, fuse_req_t req, Op op, fuse_ino_t ino) {
  r.op = op;
  r.req = req;
  r.in[IN_INO] = static_cast<double>(ino);
  const fuse_ctx* ctx = fuse_req_ctx(req);
  if (ctx != nullptr) {
    r.in[IN_UID] = ctx->uid;
    r.in[IN_GID] = ctx->gid;
    r.in[IN_PID] = ctx->pid;
    r.in[IN_UMASK] = ctx->umask;
  }
}

void SetFi(Request& r, const fuse_file_info* fi) {
  if (fi == nullptr) return;
  r.in[IN_FH] = static_cast<double>(fi->fh);
  r.in[IN_FLAGS] = fi->flags;
  r.in[IN_HAS_FH] = 1;
}

void SetData(Request& r, const char* buf, size_t len) {
  r.data = buf;
  r.dataLen = len;
  r.hasData = true;
}

void Deliver(Session* s, Request& r);

void LlInit(void* userdata, fuse_conn_info* conn) {
  Session* s = static_cast<Session*>(userdata);
  // The kernel features libfuse 2.9 gave us and nothing more, whatever
  // libfuse 3 turns on by default: asynchronous reads only. In particular no
  // writeback cache unless asked for, no atomic_o_trunc (truncation on open arrives as a
  // setattr), no handle_killpriv (v1: the daemon would have to kill privileges on every
  // setattr of a file; killpriv_v2 is added to the reply by KillprivIo instead), no
  // parallel dirops, no auto_inval_data, no splice. Then what we chose since: below.
  conn->want = conn->capable & FUSE_CAP_ASYNC_READ;
  // POSIX ACLs (-o posix_acl): the kernel checks permissions against them, the daemon keeps them
  // (mode sync, chmod, inheritance). With DONT_MASK, or the kernel would apply the umask to creates
  // in a directory whose default ACL must replace it: the daemon applies it (the request's umask).
  constexpr unsigned kAclCaps = FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
  if (s->conn.posixAcl && (conn->capable & kAclCaps) == kAclCaps) conn->want |= kAclCaps;
  s->posixAclGranted = (conn->want & kAclCaps) == kAclCaps;
  // File handles (name_to_handle_at, NFS) that outlive the kernel's inode cache: the kernel sends
  // LOOKUP of "." with the handle's node id (and ".." for a directory's parent); JS answers them.
  conn->want |= conn->capable & FUSE_CAP_EXPORT_SUPPORT;
  // Adaptive readdirplus: the kernel asks for entries with their attributes while the caller
  // looks at them (ls -l), plain entries otherwise.
  if (s->readdirplus) conn->want |= conn->capable & (FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
  // ioctls on directories too (lsattr/chattr of a directory): without it
  // libfuse answers ENOTTY for them itself.
  conn->want |= conn->capable & FUSE_CAP_IOCTL_DIR;
  // The writeback cache when asked for (-o writeback_cache): the kernel keeps
  // writes in the page cache and sends them in batches, and owns size, mtime
  // and ctime of a regular file while it caches it (DEVELOPERS.md, FUSE).
  if (s->conn.writebackCache) conn->want |= conn->capable & FUSE_CAP_WRITEBACK_CACHE;
  // libfuse caps max_write at its buffer (1 MiB) and derives max_pages from it.
  if (s->conn.maxWrite > 0) conn->max_write = s->conn.maxWrite;
  conn->max_read = s->conn.maxRead;
}

void LlLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Request r;
  Start(r, req, OP_LOOKUP, parent);
  r.name = name;
  Deliver(SessionOf(req), r);
}

void LlForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  // Nothing to answer: free the request now, tell JS afterwards.
  Session* s = SessionOf(req);
  Request r;
  Start(r, req, OP_FORGET, ino);
  fuse_reply_none(req);
  r.req = nullptr;
  r.in[IN_NLOOKUP] = static_cast<double>(nlookup);
  Deliver(s, r);
}

void LlGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Request r;
  Start(r, req, OP_GETATTR, ino);
  SetFi(r, fi);
  Deliver(SessionOf(req), r);
}

double TimeSec(const timespec& ts) { return static_cast<double>(ts.tv_sec); }

// The kernel's own flags of the request being processed, when it is of this opcode and the
// kernel lets the daemon kill privileges (KillprivIo); 0 otherwise.
uint32_t KernelFlags(const Session* s, uint32_t kernelOpcode) {
  return s->killprivGranted && s->requestOpcode == kernelOpcode ? s->requestKernelFlags : 0;
}

void LlSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  Request r;
  Start(r, req, OP_SETATTR, ino);
  r.in[IN_KERNEL_FLAGS] = KernelFlags(SessionOf(req), kFuseSetattr);
  SetFi(r, fi);
  r.in[IN_TO_SET] = to_set;
  r.in[IN_A_MODE] = attr->st_mode;
  r.in[IN_A_UID] = attr->st_uid;
  r.in[IN_A_GID] = attr->st_gid;
  r.in[IN_A_SIZE] = static_cast<double>(attr->st_size);
  r.in[IN_A_ATIME] = TimeSec(attr->st_atim);
  r.in[IN_A_ATIME_NS] = static_cast<double>(attr->st_atim.tv_nsec);
  r.in[IN_A_MTIME] = TimeSec(attr->st_mtim);
  r.in[IN_A_MTIME_NS] = static_cast<double>(attr->st_mtim.tv_nsec);
  r.in[IN_A_CTIME] = TimeSec(attr->st_ctim);
  r.in[IN_A_CTIME_NS] = static_cast<double>(attr->st_ctim.tv_nsec);
  Deliver(SessionOf(req), r);
}

void LlReadlink(fuse_req_t req, fuse_ino_t ino) {
  Request r;
  Start(r, req, OP_READLINK, ino);
  Deliver(SessionOf(req), r);
}

void LlMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  Request r;
  Start(r, req, OP_MKNOD, parent);
  r.name = name;
  r.in[IN_MODE] = mode;
  r.in[IN_RDEV] = static_cast<double>(rdev);
  Deliver(SessionOf(req), r);
}

void LlMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  Request r;
  Start(r, req, OP_MKDIR, parent);
  r.name = name;
  r.in[IN_MODE] = mode;
  Deliver(SessionOf(req), r);
}

void LlUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Request r;
  Start(r, req, OP_UNLINK, parent);
  r.name = name;
  Deliver(SessionOf(req), r);
}

void LlRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Request r;
  Start(r, req, OP_RMDIR, parent);
  r.name = name;
  Deliver(SessionOf(req), r);
}

void LlSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  Request r;
  Start(r, req, OP_SYMLINK, parent);
  r.name = name;
  r.name2 = link;
  Deliver(SessionOf(req), r);
}

// flags: RENAME_NOREPLACE / RENAME_EXCHANGE / RENAME_WHITEOUT (renameat2);
// JS answers EINVAL for those it does not support.
void LlRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
              unsigned int flags) {
  Request r;
  Start(r, req, OP_RENAME, parent);
  r.name = name;
  r.name2 = newname;
  r.in[IN_INO2] = static_cast<double>(newparent);
  r.in[IN_FLAGS] = flags;
  Deliver(SessionOf(req), r);
}

void LlLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  Request r;
  Start(r, req, OP_LINK, ino);
  r.name = newname;
  r.in[IN_INO2] = static_cast<double>(newparent);
  Deliver(SessionOf(req), r);
}

void LlOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Request r;
  Start(r, req, OP_OPEN, ino);
  SetFi(r, fi);
  Deliver(SessionOf(req), r);
}

void LlRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Request r;
  Start(r, req, OP_READ, ino);
  SetFi(r, fi);
  r.in[IN_SIZE] = static_cast<double>(size);
  r.in[IN_OFFSET] = static_cast<double>(off);
  Deliver(SessionOf(req), r);
}

void LlWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  Request r;
  Start(r, req, OP_WRITE, ino);
  SetFi(r, fi);
  // FUSE_WRITE_CACHE (bit 0 of write_flags: the kernel writing back its page cache, no write(2)
  // waits for this answer) is known with or without killpriv_v2: libfuse 3.14 passes it on as
  // fi->writepage.
  r.in[IN_KERNEL_FLAGS] = KernelFlags(SessionOf(req), kFuseWrite) | (fi != nullptr && fi->writepage ? 1u : 0u);
  r.in[IN_SIZE] = static_cast<double>(size);
  r.in[IN_OFFSET] = static_cast<double>(off);
  SetData(r, buf, size);
  Deliver(SessionOf(req), r);
}

void LlFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Request r;
  Start(r, req, OP_FLUSH, ino);
  SetFi(r, fi);
  Deliver(SessionOf(req), r);
}

void LlRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Request r;
  Start(r, req, OP_RELEASE, ino);
  SetFi(r, fi);
  Deliver(SessionOf(req), r);
}

void LlFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  Request r;
  Start(r, req, OP_FSYNC, ino);
  SetFi(r, fi);
  r.in[IN_FLAGS] = datasync;
  Deliver(SessionOf(req), r);
}

void LlOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Request r;
  Start(r, req, OP_OPENDIR, ino);
  SetFi(r, fi);
  Deliver(SessionOf(req), r);
}

// readdir and readdirplus: the same request, answered with or without attributes.
void DirRead(Op op, fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Request r;
  Start(r, req, op, ino);
  SetFi(r, fi);
  r.in[IN_SIZE] = static_cast<double>(size);
  r.in[IN_OFFSET] = static_cast<double>(off);
  r.size = size;
  Deliver(SessionOf(req), r);
}

void LlReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  DirRead(OP_READDIR, req, ino, size, off, fi);
}

// Entries with their attributes: each one but "." and ".." that JS sends with a node id counts as
// a lookup (the kernel links it as LOOKUP would, and forgets it later).
void LlReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  DirRead(OP_READDIRPLUS, req, ino, size, off, fi);
}

void LlReleasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Request r;
  Start(r, req, OP_RELEASEDIR, ino);
  SetFi(r, fi);
  Deliver(SessionOf(req), r);
}

void LlFsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  Request r;
  Start(r, req, OP_FSYNCDIR, ino);
  SetFi(r, fi);
  r.in[IN_FLAGS] = datasync;
  Deliver(SessionOf(req), r);
}

void LlStatfs(fuse_req_t req, fuse_ino_t ino) {
  Request r;
  Start(r, req, OP_STATFS, ino);
  Deliver(SessionOf(req), r);
}

void LlSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags) {
  Request r;
  Start(r, req, OP_SETXATTR, ino);
  r.name = name;
  r.in[IN_FLAGS] = flags;
  r.in[IN_SIZE] = static_cast<double>(size);
  SetData(r, value, size);
  Deliver(SessionOf(req), r);
}

void LlGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Request r;
  Start(r, req, OP_GETXATTR, ino);
  r.name = name;
  r.in[IN_SIZE] = static_cast<double>(size);
  r.size = size;
  Deliver(SessionOf(req), r);
}

void LlListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Request r;
  Start(r, req, OP_LISTXATTR, ino);
  r.in[IN_SIZE] = static_cast<double>(size);
  r.size = size;
  Deliver(SessionOf(req), r);
}

void LlRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Request r;
  Start(r, req, OP_REMOVEXATTR, ino);
  r.name = name;
  Deliver(SessionOf(req), r);
}

void LlAccess(fuse_req_t req, fuse_ino_t ino, int mask) {
  Request r;
  Start(r, req, OP_ACCESS, ino);
  r.in[IN_FLAGS] = mask;
  Deliver(SessionOf(req), r);
}

void LlCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  Request r;
  Start(r, req, OP_CREATE, parent);
  SetFi(r, fi);
  r.name = name;
  r.in[IN_MODE] = mode;
  Deliver(SessionOf(req), r);
}

void LlFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, fuse_file_info* fi) {
  Request r;
  Start(r, req, OP_FALLOCATE, ino);
  SetFi(r, fi);
  r.in[IN_MODE] = mode;
  r.in[IN_OFFSET] = static_cast<double>(offset);
  r.in[IN_SIZE] = static_cast<double>(length);
  Deliver(SessionOf(req), r);
}

// Only SEEK_DATA and SEEK_HOLE reach us: the kernel answers SEEK_SET/CUR/END
// itself (fuse_file_llseek).
void LlLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
  Request r;
  Start(r, req, OP_LSEEK, ino);
  SetFi(r, fi);
  r.in[IN_OFFSET] = static_cast<double>(off);
  r.in[IN_FLAGS] = whence;
  Deliver(SessionOf(req), r);
}

// Restricted ioctls only (the kernel's own FS_IOC_GETFLAGS/SETFLAGS and
// FS_IOC_FSGETXATTR/FSSETXATTR, whose sizes it knows): the in data arrives
// with the request and out_bufsz says how much may go back, so no
// FUSE_IOCTL_RETRY is ever needed. `arg` (the caller's pointer) means
// nothing here. JS answers with replyIoctl.
void LlIoctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void*, fuse_file_info* fi, unsigned flags, const void* in_buf,
             size_t in_bufsz, size_t out_bufsz) {
  Request r;
  Start(r, req, OP_IOCTL, ino);
  SetFi(r, fi);
  r.in[IN_IOCTL_CMD] = static_cast<double>(cmd);
  r.in[IN_FLAGS] = flags;  // SetFi put the open flags there; the ioctl's own flags matter here
  r.in[IN_SIZE] = static_cast<double>(out_bufsz);
  r.size = out_bufsz;
  SetData(r, static_cast<const char*>(in_buf), in_buf != nullptr ? in_bufsz : 0);
  Deliver(SessionOf(req), r);
}

// copy_file_range(2) between two files of this mount; JS answers with replyWrite.
void LlCopyFileRange(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in, fuse_ino_t ino_out,
                     off_t off_out, fuse_file_info* fi_out, size_t len, int flags) {
  Request r;
  Start(r, req, OP_COPY_FILE_RANGE, ino_in);
  SetFi(r, fi_in);
  r.in[IN_OFFSET] = static_cast<double>(off_in);
  r.in[IN_INO2] = static_cast<double>(ino_out);
  r.in[IN_FH2] = fi_out != nullptr ? static_cast<double>(fi_out->fh) : 0;
  r.in[IN_OFFSET2] = static_cast<double>(off_out);
  r.in[IN_SIZE] = static_cast<double>(len);
  r.in[IN_FLAGS] = flags;
  Deliver(SessionOf(req), r);
}

// Only the operations JS handles are filled in: for the others libfuse's
// own default answer applies (ENOSYS for most, which also tells the kernel
// to stop asking, e.g. for flush, fsync, access, getxattr).
fuse_lowlevel_ops BuildOps(uint64_t mask) {
  fuse_lowlevel_ops ops;
  memset(&ops, 0, sizeof ops);
  ops.init = LlInit;
  auto has = [mask](Op op) { return (mask & (uint64_t{1} << op)) != 0; };
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
  if (has(OP_LSEEK)) ops.lseek = LlLseek;
  if (has(OP_READDIRPLUS)) ops.readdirplus = LlReaddirplus;
  if (has(OP_IOCTL)) ops.ioctl = LlIoctl;
  if (has(OP_COPY_FILE_RANGE)) ops.copy_file_range = LlCopyFileRange;
  return ops;
}

// ---------------------------------------------------------------------------
// The session on the event loop

// Ends a session whose loop has stopped: answers what JS never answered
// (EIO: the replies go nowhere when the connection is gone), unmounts if the
// kernel still has us (fuse_session_unmount checks the fd for POLLERR first,
// and closes it), destroys the session.
void Finish(Session* s) {
  if (s->finished) return;
  s->finished = true;
  AddonData* a = s->addon;
  for (auto it = a->pending.begin(); it != a->pending.end();) {
    if (it->second.session == s) {
      fuse_reply_err(it->second.req, EIO);
      it = a->pending.erase(it);
    } else {
      ++it;
    }
  }
  fuse_session_unmount(s->se);
  fuse_session_destroy(s->se);
  s->se = nullptr;
  free(s->buf.mem);
  s->buf = {};
}

// Calls the JS dispatcher with (op, id, name, name2, data) and the numbers
// in the in scratch. An exception escaping the dispatcher is reported as
// uncaught; the request stays unanswered.
void Deliver(Session* s, Request& r) {
  napi_env env = s->env;
  napi_value fn;
  if (s->dispatchRef == nullptr || napi_get_reference_value(env, s->dispatchRef, &fn) != napi_ok || fn == nullptr) {
    if (r.req != nullptr) fuse_reply_err(r.req, EIO);
    return;
  }
  Napi::Env e(env);
  Napi::HandleScope scope(e);
  AddonData* a = s->addon;
  uint64_t id = 0;
  if (r.req != nullptr) {
    id = a->nextId++;
    a->pending.emplace(id, Pending{r.req, s, r.size});
  }
  memcpy(a->in, r.in, sizeof r.in);
  napi_value argv[5];
  argv[0] = Napi::Number::New(e, r.op);
  argv[1] = Napi::Number::New(e, static_cast<double>(id));
  argv[2] = r.name != nullptr ? Napi::String::New(e, r.name) : e.Undefined();
  argv[3] = r.name2 != nullptr ? Napi::String::New(e, r.name2) : e.Undefined();
  if (r.op == OP_EXIT && r.error != nullptr) argv[2] = Napi::String::New(e, r.error);
  // The receive buffer is reused for the next request: JS gets its own copy.
  argv[4] = r.hasData ? Napi::Buffer<char>::Copy(e, r.data, r.dataLen) : e.Undefined();
  napi_value result;
  if (napi_call_function(env, e.Undefined(), fn, 5, argv, &result) == napi_pending_exception) {
    // No N-API frame above us to rethrow into: report it as uncaught.
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
}

void ClosePoll(uv_handle_t* h) {
  Session* s = static_cast<Session*>(h->data);
  delete reinterpret_cast<uv_poll_t*>(h);
  s->pollGone = true;
  if (s->externalGone) delete s;
}

// /dev/fuse is readable. Reads and handles what is queued (a bounded batch,
// so the event loop stays responsive), all inside one callback scope:
// microtasks run once, after the batch.
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
    int res = fuse_session_receive_buf(s->se, &s->buf);
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
    if (res <= 0) {  // 0: ENODEV, the kernel ended the connection (the session is exited)
      if (res < 0) s->loopResult = res;
      ended = true;
      break;
    }
    fuse_session_process_buf(s->se, &s->buf);
    // An init that failed (EPROTO) exits the session.
    if (fuse_session_exited(s->se)) ended = true;
  }
  if (ended) {
    uv_poll_stop(s->poll);
    uv_close(reinterpret_cast<uv_handle_t*>(s->poll), ClosePoll);
    s->poll = nullptr;
    Finish(s);
    Request r;
    r.op = OP_EXIT;
    if (s->loopResult != 0) r.error = "reading /dev/fuse failed";
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
  }
}

void FinalizeExternal(Napi::Env, Session* s) {
  // While still mounted (the environment is going away: process exit) the
  // poll handle keeps s; the kernel ends the connection when the process
  // closes /dev/fuse.
  s->externalGone = true;
  if (s->pollGone) delete s;
}

AddonData* Data(const Napi::Env& env) { return env.GetInstanceData<AddonData>(); }

// libfuse reports why a mount failed only on stderr ("fuse: unknown option(s):
// `-o foo'", "fuse: failed to open /dev/fuse: Permission denied"). A background
// daemon's stderr goes nowhere, so while fuse_session_new / _mount run,
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

// ---------------------------------------------------------------------------
// killpriv_v2: FUSE_HANDLE_KILLPRIV_V2 through libfuse 3.14, which does not know the flag.
//
// Without it every write(2) costs a GETXATTR security.capability: the VFS asks before each write
// whether privileges must go (file_remove_privs), and only a superblock with SB_NOSEC lets an
// inode keep the answer (S_NOSEC). The kernel sets SB_NOSEC on a FUSE mount whose INIT reply has
// FUSE_HANDLE_KILLPRIV_V2, and from then on leaves killing suid/sgid on write, truncate and
// chown to the daemon (the JS side: DEVELOPERS.md, FUSE). libfuse 3.14 builds the INIT reply
// from flags it knows, so the session gets our own read and writev on its fd
// (fuse_session_custom_io): read notes, of each request, what we need that libfuse drops
// (INIT's unique and offered flags; WRITE's write_flags, SETATTR's valid), and writev adds the
// flag to the successful reply to that INIT. Everything else passes through untouched. libfuse
// uses splice only when INIT asked for it (we never do), so every request comes through read.

ssize_t KillprivRead(int fd, void* buf, size_t len, void* userdata) {
  Session* s = static_cast<Session*>(userdata);
  ssize_t n = read(fd, buf, len);
  s->requestOpcode = 0;
  s->requestKernelFlags = 0;
  if (n < static_cast<ssize_t>(kInHeaderSize)) return n;
  const char* p = static_cast<const char*>(buf);
  size_t body = static_cast<size_t>(n) - kInHeaderSize;
  auto u32 = [p](size_t at) { uint32_t v; memcpy(&v, p + at, sizeof v); return v; };
  uint32_t opcode = u32(4);
  s->requestOpcode = opcode;
  if (opcode == kFuseInit && body >= kInitFlagsAt + 4) {
    uint64_t unique;
    memcpy(&unique, p + 8, sizeof unique);
    s->killprivOffered = (u32(kInHeaderSize + kInitFlagsAt) & kHandleKillprivV2) != 0;
    s->initUnique.store(unique);
  } else if (opcode == kFuseWrite && body >= kWriteFlagsAt + 4) {
    s->requestKernelFlags = u32(kInHeaderSize + kWriteFlagsAt);
  } else if (opcode == kFuseSetattr && body >= kSetattrValidAt + 4) {
    s->requestKernelFlags = u32(kInHeaderSize + kSetattrValidAt);
  }
  return n;
}

ssize_t KillprivWritev(int fd, struct iovec* iov, int count, void* userdata) {
  Session* s = static_cast<Session*>(userdata);
  uint64_t initUnique = s->initUnique.load();
  if (initUnique == 0 || count < 2 || iov[0].iov_len < kOutHeaderSize || iov[1].iov_len < kInitFlagsAt + 4) {
    return writev(fd, iov, count);
  }
  const char* header = static_cast<const char*>(iov[0].iov_base);
  uint64_t unique;
  int32_t error;
  memcpy(&unique, header + 8, sizeof unique);
  memcpy(&error, header + 4, sizeof error);
  if (unique != initUnique) return writev(fd, iov, count);
  s->initUnique.store(0);
  if (error != 0 || !s->killprivOffered) return writev(fd, iov, count);
  // Our own copy of the reply body: libfuse's stays as it built it.
  std::vector<char> body(static_cast<const char*>(iov[1].iov_base), static_cast<const char*>(iov[1].iov_base) + iov[1].iov_len);
  uint32_t flags;
  memcpy(&flags, body.data() + kInitFlagsAt, sizeof flags);
  flags |= kHandleKillprivV2;
  memcpy(body.data() + kInitFlagsAt, &flags, sizeof flags);
  std::vector<struct iovec> out(iov, iov + count);
  out[1].iov_base = body.data();
  ssize_t rc = writev(fd, out.data(), count);
  if (rc >= 0) s->killprivGranted = true;
  return rc;
}

// After fuse_session_mount: the same fd, read and written through the functions above.
// 0 or -errno (fuse_session_custom_io's).
int InstallKillprivIo(Session* s) {
  static const fuse_custom_io io = {KillprivWritev, KillprivRead, nullptr, nullptr};
  return fuse_session_custom_io(s->se, &io, fuse_session_fd(s->se));
}

// The -o options libfuse 3's session no longer takes, read (or dropped) here
// before the rest go to fuse_session_new: max_write= (applied in init),
// max_read= (applied in init, and kept: it is also a kernel mount option),
// [no_]writeback_cache (applied in init; libfuse 3's own names), big_writes
// (always on in libfuse 3), nonempty (libfuse 3 always mounts over a non-empty
// directory), posix_acl (ours: ask for POSIX ACLs at init), killpriv_v2 (ours: the daemon
// kills privileges, see KillprivIo).
const fuse_opt kSessionOptions[] = {
    {"max_write=%u", offsetof(ConnOptions, maxWrite), 0},
    {"posix_acl", offsetof(ConnOptions, posixAcl), 1},
    {"killpriv_v2", offsetof(ConnOptions, killprivV2), 1},
    {"max_read=%u", offsetof(ConnOptions, maxRead), 0},
    FUSE_OPT_KEY("max_read=", FUSE_OPT_KEY_KEEP),
    {"writeback_cache", offsetof(ConnOptions, writebackCache), 1},
    {"no_writeback_cache", offsetof(ConnOptions, writebackCache), 0},
    FUSE_OPT_KEY("big_writes", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_KEY("nonempty", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_END,
};

// mount(mountpoint, options, dispatch, opMask, spinUs) -> session
Napi::Value Mount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsString() || !info[1].IsString() || !info[2].IsFunction() ||
      !info[3].IsNumber() || !info[4].IsNumber()) {
    throw Napi::TypeError::New(env, "mount(mountpoint, options, dispatch, opMask, spinUs)");
  }
  std::string mnt = info[0].As<Napi::String>().Utf8Value();
  std::string opts = info[1].As<Napi::String>().Utf8Value();
  double maskValue = info[3].As<Napi::Number>().DoubleValue();
  uint64_t mask = maskValue >= 0 && maskValue < 9007199254740992.0 ? static_cast<uint64_t>(maskValue) : 0;

  std::vector<std::string> argStore = {"rmapfs"};
  if (!opts.empty()) {
    argStore.push_back("-o");
    argStore.push_back(opts);
  }
  std::vector<char*> argv;
  for (auto& a : argStore) argv.push_back(&a[0]);
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  Session* s = new Session();
  s->addon = Data(env);
  s->mountpoint = mnt;
  StderrCapture capture;
  if (fuse_opt_parse(&args, &s->conn, kSessionOptions, nullptr) != 0) {
    fuse_opt_free_args(&args);
    delete s;
    throw Napi::Error::New(env, FuseMessage(capture.Finish(), "bad mount options for " + mnt));
  }
  fuse_lowlevel_ops ops = BuildOps(mask);
  s->readdirplus = ops.readdirplus != nullptr;
  s->se = fuse_session_new(&args, &ops, sizeof ops, s);
  fuse_opt_free_args(&args);
  if (s->se == nullptr) {
    delete s;
    throw Napi::Error::New(env, FuseMessage(capture.Finish(), "fuse_session_new failed (bad option?) for " + mnt));
  }
  if (fuse_session_mount(s->se, mnt.c_str()) != 0) {
    fuse_session_destroy(s->se);
    delete s;
    throw Napi::Error::New(env, FuseMessage(capture.Finish(), "fuse_session_mount failed for " + mnt));
  }
  if (s->conn.killprivV2) {
    int rc = InstallKillprivIo(s);
    if (rc != 0) {
      fuse_session_unmount(s->se);
      fuse_session_destroy(s->se);
      delete s;
      throw Napi::Error::New(env, FuseMessage(capture.Finish(), std::string("cannot read /dev/fuse for killpriv_v2: ") + strerror(-rc)));
    }
  }
  std::string libfuseSaid = capture.Finish();
  if (!libfuseSaid.empty()) fputs(libfuseSaid.c_str(), stderr);  // warnings of a mount that worked

  s->env = env;
  int fd = fuse_session_fd(s->se);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  double spinUs = info[4].As<Napi::Number>().DoubleValue();
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

// unmount(session) -> 0 or errno. A lazy umount2(2): the loop ends (and
// EXIT is dispatched) once the kernel drops the connection, i.e. when the
// last user of the mount lets go. Never waits, so the JS thread stays free
// to answer the requests that may still arrive until then. EPERM (not
// root) leaves it to the caller to run fusermount3 -uz.
Napi::Value Unmount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal()) throw Napi::TypeError::New(env, "unmount(session)");
  Session* s = info[0].As<Napi::External<Session>>().Data();
  if (s->finished) return Napi::Number::New(env, 0);
  int rc = umount2(s->mountpoint.c_str(), MNT_DETACH);
  return Napi::Number::New(env, rc == 0 ? 0 : errno);
}

// pending(session) -> bool: a request waits on /dev/fuse (the event loop has
// not read it yet). Lets background work on the JS thread (online scrub,
// repair) step aside at once for the foreground.
Napi::Value RequestWaiting(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal()) throw Napi::TypeError::New(env, "pending(session)");
  Session* s = info[0].As<Napi::External<Session>>().Data();
  if (s->finished || s->poll == nullptr) return Napi::Boolean::New(env, false);
  struct pollfd p = {fuse_session_fd(s->se), POLLIN, 0};
  return Napi::Boolean::New(env, poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0);
}

// posixAcl(session) -> bool: INIT granted POSIX ACLs (false before INIT and
// when the kernel does not offer them).
Napi::Value PosixAcl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal()) throw Napi::TypeError::New(env, "posixAcl(session)");
  Session* s = info[0].As<Napi::External<Session>>().Data();
  return Napi::Boolean::New(env, s->posixAclGranted);
}

// killprivV2(session) -> bool: INIT's reply carried FUSE_HANDLE_KILLPRIV_V2 (false before INIT,
// without the killpriv_v2 option, and when the kernel does not offer it): the daemon kills
// suid/sgid on write, truncate and chown from now on.
Napi::Value KillprivV2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal()) throw Napi::TypeError::New(env, "killprivV2(session)");
  Session* s = info[0].As<Napi::External<Session>>().Data();
  return Napi::Boolean::New(env, s->killprivGranted);
}

// writeBack(session, ino, done(errno)): the kernel writes the inode's dirty
// pages back (as WRITE requests to us) and drops its page cache:
// fuse_lowlevel_notify_inval_inode(ino, 0, 0), which blocks until that
// writeback is done. So it runs on a worker thread while the JS thread goes
// on serving the WRITEs; `done` is called on the JS thread with 0 or the
// errno. Used before answering an lseek that must see data the writeback
// cache still holds (DEVELOPERS.md, FUSE). The JS side keeps the session's
// External alive meanwhile; a caller waiting in lseek holds the file open,
// so the connection outlives the call.
class WriteBackWorker : public Napi::AsyncWorker {
 public:
  WriteBackWorker(Napi::Function done, fuse_session* se, fuse_ino_t ino)
      : Napi::AsyncWorker(done, "rmapfs_fuse_writeback"), se_(se), ino_(ino) {}
  void Execute() override { rc_ = fuse_lowlevel_notify_inval_inode(se_, ino_, 0, 0); }
  void OnOK() override { Callback().Call({Napi::Number::New(Env(), rc_ < 0 ? -rc_ : rc_)}); }

 private:
  fuse_session* se_;
  fuse_ino_t ino_;
  int rc_ = 0;
};

// invalidateAttributes(session, ino) -> errno: the kernel forgets the
// attributes it caches of the inode (fuse_lowlevel_notify_inval_inode with
// a negative offset: no page is touched, so nothing waits on us and the JS
// thread may call it). The next write(2) to the file then asks GETATTR
// first (fuse_cache_write_iter), which is how a writeback error reaches the
// writer (DEVELOPERS.md, FUSE).
Napi::Value InvalidateAttributes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsExternal() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, "invalidateAttributes(session, ino)");
  }
  Session* s = info[0].As<Napi::External<Session>>().Data();
  if (s->finished) return Napi::Number::New(env, ENOTCONN);
  auto ino = static_cast<fuse_ino_t>(info[1].As<Napi::Number>().DoubleValue());
  int rc = fuse_lowlevel_notify_inval_inode(s->se, ino, -1, 0);
  return Napi::Number::New(env, rc < 0 ? -rc : rc);
}

Napi::Value WriteBack(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsExternal() || !info[1].IsNumber() || !info[2].IsFunction()) {
    throw Napi::TypeError::New(env, "writeBack(session, ino, done)");
  }
  Session* s = info[0].As<Napi::External<Session>>().Data();
  Napi::Function done = info[2].As<Napi::Function>();
  if (s->finished) {
    done.Call({Napi::Number::New(env, ENOTCONN)});
    return env.Undefined();
  }
  auto ino = static_cast<fuse_ino_t>(info[1].As<Napi::Number>().DoubleValue());
  (new WriteBackWorker(done, s->se, ino))->Queue();
  return env.Undefined();
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

// replyIoctl(id, result[, buffer]): the ioctl's return value and the bytes
// for the caller's out area (none when absent).
Napi::Value ReplyIoctl(const Napi::CallbackInfo& info) {
  Pending p = Take(info);
  int result = static_cast<int>(Arg(info, 1, 0));
  if (info.Length() >= 3 && info[2].IsTypedArray()) {
    Napi::Uint8Array b = info[2].As<Napi::Uint8Array>();
    size_t len = b.ByteLength() < p.size ? b.ByteLength() : p.size;
    return Result(info.Env(), fuse_reply_ioctl(p.req, result, b.Data(), len));
  }
  return Result(info.Env(), fuse_reply_ioctl(p.req, result, nullptr, 0));
}

// replyLseek(id, offset): the file position lseek(2) returns.
Napi::Value ReplyLseek(const Napi::CallbackInfo& info) {
  Pending p = Take(info);
  return Result(info.Env(), fuse_reply_lseek(p.req, static_cast<off_t>(Arg(info, 1))));
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

// Packs entries[start..] ({name, ino, mode, off}; off: the offset of the entry
// after this one) into one reply of the request's size and sends it; returns
// how many were sent. Plain: fuse_add_direntry. Plus (attrs given): with
// fuse_add_direntry_plus, each entry's attributes from attrs, OUT_COUNT numbers
// per entry laid out as the out scratch, entry i at i * OUT_COUNT; an
// OUT_INO of 0 there sends the entry without them (node id 0: the kernel links
// nothing and counts no lookup). -1: the reply did not reach the kernel (the
// request was interrupted), so none of them counts.
Napi::Value ReplyDirents(const Napi::CallbackInfo& info, bool plus) {
  Napi::Env env = info.Env();
  Pending p = Take(info);
  if (info.Length() < 2 || !info[1].IsArray() || (plus && (info.Length() < 4 || !info[3].IsTypedArray()))) {
    fuse_reply_err(p.req, EIO);
    throw Napi::TypeError::New(env, plus ? "replyReaddirplus(id, entries, start, attrs)" : "replyReaddir(id, entries, start?)");
  }
  Napi::Array entries = info[1].As<Napi::Array>();
  uint32_t n = entries.Length();
  uint32_t start = static_cast<uint32_t>(Arg(info, 2, 0));
  const double* attrs = nullptr;
  size_t attrRows = 0;
  if (plus) {
    Napi::Float64Array a = info[3].As<Napi::Float64Array>();
    attrs = a.Data();
    attrRows = a.ElementLength() / OUT_COUNT;
  }
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
      off_t off = static_cast<off_t>(ent.Get(kOff).ToNumber().DoubleValue());
      size_t need;
      if (plus) {
        fuse_entry_param e;
        size_t row = i;
        if (row < attrRows && attrs[row * OUT_COUNT + OUT_INO] != 0) {
          FillEntry(attrs + row * OUT_COUNT, &e);
        } else {
          memset(&e, 0, sizeof e);  // no node id: only the name, inode number and type
          e.attr.st_ino = static_cast<ino_t>(ent.Get(kIno).ToNumber().DoubleValue());
          e.attr.st_mode = static_cast<mode_t>(ent.Get(kMode).ToNumber().Uint32Value());
        }
        need = fuse_add_direntry_plus(p.req, buf.data() + used, p.size - used, name.c_str(), &e, off);
      } else {
        struct stat st;
        memset(&st, 0, sizeof st);
        st.st_ino = static_cast<ino_t>(ent.Get(kIno).ToNumber().DoubleValue());
        st.st_mode = static_cast<mode_t>(ent.Get(kMode).ToNumber().Uint32Value());
        need = fuse_add_direntry(p.req, buf.data() + used, p.size - used, name.c_str(), &st, off);
      }
      if (need > p.size - used) break;
      used += need;
      sent++;
    }
  } catch (...) {
    fuse_reply_err(p.req, EIO);  // an entry's getter threw: still answer once
    throw;
  }
  if (fuse_reply_buf(p.req, buf.data(), used) != 0) return Napi::Number::New(env, -1);
  return Napi::Number::New(env, sent);
}

// replyReaddir(id, entries, start): see ReplyDirents.
Napi::Value ReplyReaddir(const Napi::CallbackInfo& info) { return ReplyDirents(info, false); }

// replyReaddirplus(id, entries, start, attrs): see ReplyDirents.
Napi::Value ReplyReaddirplus(const Napi::CallbackInfo& info) { return ReplyDirents(info, true); }

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

// The numbers shared with lowlevel.ts, by name, for its check at load:
// { ops: {EXIT: 0, ...}, in: {INO: 0, ...}, out: {...}, statfs: {...} }.
Napi::Object SharedTables(Napi::Env env) {
  Napi::Object tables = Napi::Object::New(env);
  Napi::Object t = Napi::Object::New(env);
#define RMAPFS_TABLE_ENTRY(name, n) t.Set(#name, Napi::Number::New(env, n));
  RMAPFS_OPS(RMAPFS_TABLE_ENTRY)
  tables.Set("ops", t);
  t = Napi::Object::New(env);
  RMAPFS_IN_SLOTS(RMAPFS_TABLE_ENTRY)
  tables.Set("in", t);
  t = Napi::Object::New(env);
  RMAPFS_OUT_SLOTS(RMAPFS_TABLE_ENTRY)
  tables.Set("out", t);
  t = Napi::Object::New(env);
  RMAPFS_STATFS_SLOTS(RMAPFS_TABLE_ENTRY)
  tables.Set("statfs", t);
#undef RMAPFS_TABLE_ENTRY
  return tables;
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
  exports.Set("tables", SharedTables(env));
  exports.Set("mount", Napi::Function::New(env, Mount, "mount"));
  exports.Set("unmount", Napi::Function::New(env, Unmount, "unmount"));
  exports.Set("pending", Napi::Function::New(env, RequestWaiting, "pending"));
  exports.Set("posixAcl", Napi::Function::New(env, PosixAcl, "posixAcl"));
  exports.Set("killprivV2", Napi::Function::New(env, KillprivV2, "killprivV2"));
  exports.Set("writeBack", Napi::Function::New(env, WriteBack, "writeBack"));
  exports.Set("invalidateAttributes", Napi::Function::New(env, InvalidateAttributes, "invalidateAttributes"));
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
  exports.Set("replyLseek", Napi::Function::New(env, ReplyLseek, "replyLseek"));
  exports.Set("replyIoctl", Napi::Function::New(env, ReplyIoctl, "replyIoctl"));
  exports.Set("replyStatfs", Napi::Function::New(env, ReplyStatfs, "replyStatfs"));
  exports.Set("replyXattr", Napi::Function::New(env, ReplyXattr, "replyXattr"));
  exports.Set("replyReaddir", Napi::Function::New(env, ReplyReaddir, "replyReaddir"));
  exports.Set("replyReaddirplus", Napi::Function::New(env, ReplyReaddirplus, "replyReaddirplus"));
  return exports;
}

}  // namespace

NODE_API_MODULE(rmapfs_fuse, Init)

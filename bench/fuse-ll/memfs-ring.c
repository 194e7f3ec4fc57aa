/*
 * bench/fuse-ll/memfs-ring.c: a trivial in-memory filesystem served straight
 * off /dev/fuse (no libfuse), to measure what FUSE over io_uring would give a
 * one-thread daemon against the classic read(2)/writev(2) loop. Compiled with
 * cc by bench/fuse-ll/main.ts at run time; see DEVELOPERS.md "FUSE over
 * io_uring" for the figures and the protocol facts this relies on.
 *
 *   memfs-ring MODE MNT [--counts FILE]
 *
 * MODE:
 *   classic        blocking read(2) of /dev/fuse, writev(2) of the reply
 *   classic-epoll  the same woken by epoll_wait, as an event loop (libuv) is
 *   uring          one io_uring, one thread: replies go back with
 *                  COMMIT_AND_FETCH, which also waits for the next request
 *   uring-epoll    the same, but woken through an eventfd registered with the
 *                  ring and epoll_wait, as a libuv binding would have to be
 *
 * Mounts MNT (as root, mount(2) with fd=), answers FUSE_INIT, prints "ready"
 * and serves until the mount goes away. If the kernel does not offer
 * FUSE_OVER_IO_URING (the fuse module's enable_uring is N) a uring mode
 * prints "no-uring: ..." on stderr, unmounts and exits 3.
 * --counts FILE: a shared counter page of little-endian u64s: [0] requests
 * served (forgets included), [k] requests of opcode k (0 < k < 64), [64]
 * those of them that came through the ring, so a measuring process can read
 * per-phase request counts without asking us.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * The FUSE-over-io_uring uapi (Linux 6.14+ include/uapi/linux/fuse.h,
 * protocol 7.42), missing from Debian 12's 6.1 headers. */

#define FUSE_OVER_IO_URING_FLAGS2 (1u << (41 - 32)) /* FUSE_OVER_IO_URING, an init flag in flags2 */
#define FUSE_URING_IN_OUT_HEADER_SZ 128
#define FUSE_URING_OP_IN_OUT_SZ 128

struct fuse_uring_ent_in_out {
  uint64_t flags;
  uint64_t commit_id; /* the request's unique: given back with the commit */
  uint32_t payload_sz; /* bytes used in the payload buffer, either way */
  uint32_t padding;
  uint64_t reserved;
};

/* An entry's header buffer (iov[0] of REGISTER). */
struct fuse_uring_req_header {
  char in_out[FUSE_URING_IN_OUT_HEADER_SZ]; /* fuse_in_header in, fuse_out_header out */
  char op_in[FUSE_URING_OP_IN_OUT_SZ]; /* the request's first argument (the per-opcode struct) */
  struct fuse_uring_ent_in_out ring_ent_in_out;
};

enum { FUSE_IO_URING_CMD_REGISTER = 1, FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2 };

/* In the SQE's command area (an SQE128 ring). */
struct fuse_uring_cmd_req {
  uint64_t flags;
  uint64_t commit_id;
  uint16_t qid;
  uint8_t padding[6];
};

_Static_assert(sizeof(struct fuse_uring_req_header) == 288, "fuse_uring_req_header is 288 bytes in the uapi");
_Static_assert(sizeof(struct fuse_uring_cmd_req) == 24, "fuse_uring_cmd_req is 24 bytes in the uapi");

/* ------------------------------------------------------------------------ */

#define MAX_WRITE (128 * 1024) /* as bench/fuse-ll mounts the JS variants (max_write=131072) */
#define MAX_PAGES (MAX_WRITE / 4096)
#define BUF_SIZE (MAX_WRITE + 4096) /* the kernel wants room for a whole WRITE (header + write_in + data) */
#define QUEUE_DEPTH 4 /* entries per ring queue: the clients here are one thread, a few suffice */

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "memfs-ring: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

static uint64_t *counts; /* the --counts page, or a private one */
#define COUNT_VIA_RING 64

/* ------------------------------------------------------------------------
 * The filesystem: nodes by inode number, names in one hash table keyed by
 * (parent, name), each directory's names also on a list in creation order
 * (readdir offsets are positions in it). */

struct dentry {
  uint64_t parent, ino, seq;
  struct dentry *hash_next, *prev, *next;
  char name[];
};

struct node {
  uint64_t ino, size;
  uint32_t mode, nlink, uid, gid, rdev;
  struct timespec atime, mtime, ctime;
  char *data;
  size_t cap;
  char *target;
  struct dentry *first, *last; /* a directory's children in creation order */
  uint64_t next_seq;
};

#define HASH_BITS 17
static struct dentry *buckets[1u << HASH_BITS];
static struct node **nodes;
static uint64_t nodes_cap, next_ino = 2;

static uint32_t name_hash(uint64_t parent, const char *name) {
  uint64_t h = 1469598103934665603ull ^ parent;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 1099511628211ull;
  return (uint32_t)(h ^ (h >> 32)) & ((1u << HASH_BITS) - 1);
}

static struct node *get(uint64_t ino) { return ino < nodes_cap ? nodes[ino] : NULL; }

static struct dentry *find(uint64_t parent, const char *name) {
  for (struct dentry *d = buckets[name_hash(parent, name)]; d; d = d->hash_next)
    if (d->parent == parent && strcmp(d->name, name) == 0) return d;
  return NULL;
}

static struct node *make_at(uint64_t ino, uint32_t mode, uint32_t uid, uint32_t gid) {
  if (ino >= nodes_cap) {
    uint64_t cap = nodes_cap ? nodes_cap * 2 : 1024;
    nodes = realloc(nodes, cap * sizeof *nodes);
    memset(nodes + nodes_cap, 0, (cap - nodes_cap) * sizeof *nodes);
    nodes_cap = cap;
  }
  struct node *n = calloc(1, sizeof *n);
  n->ino = ino;
  n->mode = mode;
  n->nlink = S_ISDIR(mode) ? 2 : 1;
  n->uid = uid;
  n->gid = gid;
  clock_gettime(CLOCK_REALTIME, &n->mtime);
  n->atime = n->ctime = n->mtime;
  nodes[ino] = n;
  return n;
}

static struct node *make(uint32_t mode, uint32_t uid, uint32_t gid) { return make_at(next_ino++, mode, uid, gid); }

static void link_name(struct node *dir, const char *name, struct node *n) {
  size_t len = strlen(name);
  struct dentry *d = malloc(sizeof *d + len + 1);
  memcpy(d->name, name, len + 1);
  d->parent = dir->ino;
  d->ino = n->ino;
  d->seq = ++dir->next_seq;
  uint32_t h = name_hash(dir->ino, name);
  d->hash_next = buckets[h];
  buckets[h] = d;
  d->next = NULL;
  d->prev = dir->last;
  if (dir->last) dir->last->next = d;
  else dir->first = d;
  dir->last = d;
  if (S_ISDIR(n->mode)) dir->nlink++;
  clock_gettime(CLOCK_REALTIME, &dir->mtime);
  dir->ctime = dir->mtime;
}

static void unlink_name(struct node *dir, struct dentry *d) {
  struct dentry **pp = &buckets[name_hash(d->parent, d->name)];
  while (*pp != d) pp = &(*pp)->hash_next;
  *pp = d->hash_next;
  if (d->prev) d->prev->next = d->next;
  else dir->first = d->next;
  if (d->next) d->next->prev = d->prev;
  else dir->last = d->prev;
  struct node *n = get(d->ino);
  free(d);
  clock_gettime(CLOCK_REALTIME, &dir->mtime);
  dir->ctime = dir->mtime;
  if (n == NULL) return;
  if (S_ISDIR(n->mode)) dir->nlink--;
  n->ctime = dir->mtime;
  if (S_ISDIR(n->mode) || --n->nlink == 0) {
    /* Like bench/fuse-ll's MemFs: the node goes with its last name. */
    nodes[n->ino] = NULL;
    free(n->data);
    free(n->target);
    free(n);
  }
}

static void fill_attr(struct fuse_attr *a, const struct node *n) {
  memset(a, 0, sizeof *a);
  a->ino = n->ino;
  a->size = n->size;
  a->blocks = (n->size + 511) / 512;
  a->atime = n->atime.tv_sec;
  a->atimensec = n->atime.tv_nsec;
  a->mtime = n->mtime.tv_sec;
  a->mtimensec = n->mtime.tv_nsec;
  a->ctime = n->ctime.tv_sec;
  a->ctimensec = n->ctime.tv_nsec;
  a->mode = n->mode;
  a->nlink = n->nlink;
  a->uid = n->uid;
  a->gid = n->gid;
  a->rdev = n->rdev;
  a->blksize = 4096;
}

/* 1 s entry and attribute timeouts, as the JS variants and the rmapfs daemon. */
static int entry_reply(char *out, const struct node *n) {
  struct fuse_entry_out *e = (struct fuse_entry_out *)out;
  memset(e, 0, sizeof *e);
  e->nodeid = n->ino;
  e->entry_valid = 1;
  e->attr_valid = 1;
  fill_attr(&e->attr, n);
  return sizeof *e;
}

static int attr_reply(char *out, const struct node *n) {
  struct fuse_attr_out *a = (struct fuse_attr_out *)out;
  memset(a, 0, sizeof *a);
  a->attr_valid = 1;
  fill_attr(&a->attr, n);
  return sizeof *a;
}

static int grow(struct node *n, uint64_t size) {
  if (size <= n->cap) return 0;
  size_t cap = n->cap ? n->cap : 4096;
  while (cap < size) cap *= 2;
  char *data = realloc(n->data, cap);
  if (data == NULL) return -ENOMEM;
  memset(data + n->cap, 0, cap - n->cap);
  n->data = data;
  n->cap = cap;
  return 0;
}

static int new_child(uint64_t parent, const char *name, uint32_t mode, uint32_t rdev, const struct fuse_in_header *in,
                     struct node **made) {
  struct node *dir = get(parent);
  if (dir == NULL) return -ENOENT;
  if (!S_ISDIR(dir->mode)) return -ENOTDIR;
  if (find(parent, name)) return -EEXIST;
  struct node *n = make(mode, in->uid, in->gid);
  n->rdev = rdev;
  link_name(dir, name, n);
  *made = n;
  return 0;
}

/*
 * The size of each opcode's first argument: in the ring it comes in op_in and
 * the rest in the payload; through /dev/fuse the two simply follow the
 * fuse_in_header. LOOKUP, UNLINK, RMDIR and SYMLINK have an empty first
 * argument since 6.14 (fuse_set_zero_arg0), so their names start the payload.
 */
static uint32_t first_arg_size(uint32_t opcode) {
  switch (opcode) {
  case FUSE_GETATTR: return sizeof(struct fuse_getattr_in);
  case FUSE_SETATTR: return sizeof(struct fuse_setattr_in);
  case FUSE_MKNOD: return sizeof(struct fuse_mknod_in);
  case FUSE_MKDIR: return sizeof(struct fuse_mkdir_in);
  case FUSE_OPEN: case FUSE_OPENDIR: return sizeof(struct fuse_open_in);
  case FUSE_READ: case FUSE_READDIR: return sizeof(struct fuse_read_in);
  case FUSE_WRITE: return sizeof(struct fuse_write_in);
  case FUSE_RELEASE: case FUSE_RELEASEDIR: return sizeof(struct fuse_release_in);
  case FUSE_FSYNC: case FUSE_FSYNCDIR: return sizeof(struct fuse_fsync_in);
  case FUSE_GETXATTR: case FUSE_LISTXATTR: return sizeof(struct fuse_getxattr_in);
  case FUSE_CREATE: return sizeof(struct fuse_create_in);
  case FUSE_FALLOCATE: return sizeof(struct fuse_fallocate_in);
  case FUSE_FLUSH: return sizeof(struct fuse_flush_in);
  default: return 0; /* LOOKUP UNLINK RMDIR SYMLINK STATFS DESTROY; the ones we refuse do not care */
  }
}

#define NO_REPLY 1 /* handle()'s answer to FORGET and BATCH_FORGET */

/*
 * Serves one request. `op` is its first argument, `payload` the rest (names,
 * write data). The reply's body goes to `out` (which may be `payload` itself:
 * every input is read before `out` is written). Returns the body's length,
 * a negative errno, or NO_REPLY.
 */
static int handle(const struct fuse_in_header *in, const void *op, const char *payload, char *out) {
  counts[0]++;
  if (in->opcode < 64) counts[in->opcode]++;
  struct node *n = in->opcode == FUSE_LOOKUP || in->opcode == FUSE_STATFS ? NULL : get(in->nodeid);
  struct node *made;
  struct timespec now;
  int err;
  switch (in->opcode) {
  case FUSE_FORGET: case FUSE_BATCH_FORGET: case FUSE_INTERRUPT:
    return NO_REPLY;
  case FUSE_LOOKUP: {
    struct dentry *d = find(in->nodeid, payload);
    struct node *child = d ? get(d->ino) : NULL;
    return child ? entry_reply(out, child) : -ENOENT;
  }
  case FUSE_GETATTR:
    return n ? attr_reply(out, n) : -ENOENT;
  case FUSE_SETATTR: {
    const struct fuse_setattr_in *s = op;
    if (n == NULL) return -ENOENT;
    clock_gettime(CLOCK_REALTIME, &now);
    if (s->valid & FATTR_SIZE) {
      if (S_ISDIR(n->mode)) return -EISDIR;
      if ((err = grow(n, s->size)) < 0) return err;
      if (s->size < n->size) memset(n->data + s->size, 0, n->size - s->size);
      n->size = s->size;
      n->mtime = now;
    }
    if (s->valid & FATTR_MODE) n->mode = (n->mode & S_IFMT) | (s->mode & ~S_IFMT);
    if (s->valid & FATTR_UID) n->uid = s->uid;
    if (s->valid & FATTR_GID) n->gid = s->gid;
    if (s->valid & FATTR_ATIME_NOW) n->atime = now;
    else if (s->valid & FATTR_ATIME) n->atime = (struct timespec){ (time_t)s->atime, s->atimensec };
    if (s->valid & FATTR_MTIME_NOW) n->mtime = now;
    else if (s->valid & FATTR_MTIME) n->mtime = (struct timespec){ (time_t)s->mtime, s->mtimensec };
    n->ctime = now;
    return attr_reply(out, n);
  }
  case FUSE_MKNOD: {
    const struct fuse_mknod_in *m = op;
    if ((err = new_child(in->nodeid, payload, m->mode, m->rdev, in, &made)) < 0) return err;
    return entry_reply(out, made);
  }
  case FUSE_MKDIR: {
    const struct fuse_mkdir_in *m = op;
    if ((err = new_child(in->nodeid, payload, S_IFDIR | (m->mode & 07777), 0, in, &made)) < 0) return err;
    return entry_reply(out, made);
  }
  case FUSE_SYMLINK: {
    const char *target = payload + strlen(payload) + 1;
    if ((err = new_child(in->nodeid, payload, S_IFLNK | 0777, 0, in, &made)) < 0) return err;
    made->target = strdup(target);
    made->size = strlen(target);
    return entry_reply(out, made);
  }
  case FUSE_READLINK:
    if (n == NULL) return -ENOENT;
    if (!S_ISLNK(n->mode)) return -EINVAL;
    memcpy(out, n->target, n->size);
    return (int)n->size;
  case FUSE_UNLINK: case FUSE_RMDIR: {
    struct dentry *d = find(in->nodeid, payload);
    struct node *child = d ? get(d->ino) : NULL;
    if (n == NULL || child == NULL) return -ENOENT;
    if (in->opcode == FUSE_UNLINK && S_ISDIR(child->mode)) return -EISDIR;
    if (in->opcode == FUSE_RMDIR) {
      if (!S_ISDIR(child->mode)) return -ENOTDIR;
      if (child->first) return -ENOTEMPTY;
    }
    unlink_name(n, d);
    return 0;
  }
  case FUSE_OPEN: case FUSE_OPENDIR: {
    if (n == NULL) return -ENOENT;
    if (in->opcode == FUSE_OPENDIR && !S_ISDIR(n->mode)) return -ENOTDIR;
    struct fuse_open_out *o = (struct fuse_open_out *)out;
    memset(o, 0, sizeof *o);
    o->fh = n->ino; /* as MemFs: the inode number is the handle */
    return sizeof *o;
  }
  case FUSE_CREATE: {
    const struct fuse_create_in *c = op;
    if ((err = new_child(in->nodeid, payload, S_IFREG | (c->mode & 07777), 0, in, &made)) < 0) return err;
    int len = entry_reply(out, made);
    struct fuse_open_out *o = (struct fuse_open_out *)(out + len);
    memset(o, 0, sizeof *o);
    o->fh = made->ino;
    return len + (int)sizeof *o;
  }
  case FUSE_READ: {
    const struct fuse_read_in *r = op;
    if (n == NULL) return -ENOENT;
    if (r->offset >= n->size) return 0;
    uint64_t len = n->size - r->offset < r->size ? n->size - r->offset : r->size;
    memcpy(out, n->data + r->offset, len);
    return (int)len;
  }
  case FUSE_WRITE: {
    const struct fuse_write_in *w = op;
    if (n == NULL) return -ENOENT;
    uint64_t end = w->offset + w->size;
    if ((err = grow(n, end)) < 0) return err;
    memcpy(n->data + w->offset, payload, w->size);
    if (end > n->size) n->size = end;
    clock_gettime(CLOCK_REALTIME, &n->mtime);
    n->ctime = n->mtime;
    uint32_t size = w->size;
    struct fuse_write_out *o = (struct fuse_write_out *)out;
    memset(o, 0, sizeof *o);
    o->size = size;
    return sizeof *o;
  }
  case FUSE_FALLOCATE: {
    const struct fuse_fallocate_in *f = op;
    if (n == NULL) return -ENOENT;
    if (f->mode != 0) return -EOPNOTSUPP;
    uint64_t end = f->offset + f->length;
    if ((err = grow(n, end)) < 0) return err;
    if (end > n->size) n->size = end;
    return 0;
  }
  case FUSE_READDIR: {
    /* Offsets: 1 after ".", 2 after "..", then each name's seq + 2. */
    const struct fuse_read_in *r = op;
    if (n == NULL) return -ENOENT;
    if (!S_ISDIR(n->mode)) return -ENOTDIR;
    uint64_t offset = r->offset;
    uint32_t size = r->size, used = 0;
    struct dentry *d = n->first;
    for (uint64_t off = offset + 1;; off++) {
      const char *name;
      uint64_t ino;
      uint32_t type;
      if (off == 1) { name = "."; ino = n->ino; type = S_IFDIR >> 12; }
      else if (off == 2) { name = ".."; ino = 1; type = S_IFDIR >> 12; }
      else {
        while (d && d->seq + 2 < off) d = d->next;
        if (d == NULL) break;
        struct node *c = get(d->ino);
        name = d->name;
        ino = d->ino;
        type = c ? (c->mode & S_IFMT) >> 12 : 0;
        off = d->seq + 2;
        d = d->next;
      }
      size_t namelen = strlen(name);
      size_t len = FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + namelen);
      if (used + len > size) break;
      struct fuse_dirent *e = (struct fuse_dirent *)(out + used);
      e->ino = ino;
      e->off = off;
      e->namelen = (uint32_t)namelen;
      e->type = type;
      memcpy(e->name, name, namelen);
      memset(e->name + namelen, 0, len - FUSE_NAME_OFFSET - namelen);
      used += (uint32_t)len;
    }
    return (int)used;
  }
  case FUSE_RELEASE: case FUSE_RELEASEDIR: case FUSE_FSYNC: case FUSE_FSYNCDIR: case FUSE_DESTROY:
    return 0;
  case FUSE_STATFS: {
    struct fuse_statfs_out *s = (struct fuse_statfs_out *)out;
    memset(s, 0, sizeof *s);
    s->st.blocks = 1u << 20;
    s->st.bfree = s->st.bavail = 1u << 19;
    s->st.files = 1u << 20;
    s->st.ffree = (1u << 20) - (next_ino - 1);
    s->st.bsize = s->st.frsize = 4096;
    s->st.namelen = 255;
    return sizeof *s;
  }
  case FUSE_GETXATTR:
    /* MemFs holds no attributes either: the same ENODATA, so the kernel keeps
     * asking for security.capability before each write, as with the JS variants. */
    return n ? -ENODATA : -ENOENT;
  default:
    /* FLUSH, ACCESS, LINK, RENAME, ...: what libfuse answers for an op the JS
     * variants leave out. */
    return -ENOSYS;
  }
}

/* ------------------------------------------------------------------------
 * Mount and INIT */

static int fuse_fd;
static const char *mountpoint;

static void do_mount(void) {
  fuse_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fuse_fd < 0) die("open /dev/fuse: %s", strerror(errno));
  char opts[256];
  snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=0,group_id=0,default_permissions", fuse_fd);
  if (mount("memfs-ring", mountpoint, "fuse.memfs-ring", MS_NOSUID | MS_NODEV, opts) < 0)
    die("mount %s: %s", mountpoint, strerror(errno));
}

static char request_buf[BUF_SIZE] __attribute__((aligned(4096)));
static char reply_buf[BUF_SIZE] __attribute__((aligned(4096)));

/* Reads FUSE_INIT and answers it; returns whether the kernel offered the ring. */
static int do_init(int want_ring) {
  ssize_t got = read(fuse_fd, request_buf, sizeof request_buf);
  if (got < (ssize_t)sizeof(struct fuse_in_header)) die("reading FUSE_INIT: %s", got < 0 ? strerror(errno) : "short");
  const struct fuse_in_header *in = (const struct fuse_in_header *)request_buf;
  const struct fuse_init_in *init = (const struct fuse_init_in *)(in + 1);
  if (in->opcode != FUSE_INIT) die("first request is opcode %u, not FUSE_INIT", in->opcode);
  if (init->major != 7) die("kernel FUSE major %u", init->major);
  uint32_t offered2 = (init->flags & FUSE_INIT_EXT) ? init->flags2 : 0;
  int ring = want_ring && (offered2 & FUSE_OVER_IO_URING_FLAGS2);
  struct {
    struct fuse_out_header h;
    struct fuse_init_out o;
  } reply;
  memset(&reply, 0, sizeof reply);
  reply.h.len = sizeof reply;
  reply.h.unique = in->unique;
  reply.o.major = 7;
  reply.o.minor = init->minor < FUSE_KERNEL_MINOR_VERSION ? init->minor : FUSE_KERNEL_MINOR_VERSION;
  reply.o.max_readahead = init->max_readahead;
  /* What our libfuse 3 binding answers (flags 0x40400021): async read, big
   * writes, max_pages, init_ext; and the ring when asked for and offered. */
  reply.o.flags = init->flags & (FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_MAX_PAGES | FUSE_INIT_EXT);
  reply.o.flags2 = ring ? FUSE_OVER_IO_URING_FLAGS2 : 0;
  reply.o.max_write = MAX_WRITE;
  reply.o.max_pages = MAX_PAGES;
  reply.o.time_gran = 1;
  if (write(fuse_fd, &reply, sizeof reply) != (ssize_t)sizeof reply) die("answering FUSE_INIT: %s", strerror(errno));
  return ring;
}

/* ------------------------------------------------------------------------
 * The classic loop */

static void reply_classic(const struct fuse_in_header *in, int result) {
  struct fuse_out_header h = { .len = sizeof h, .error = 0, .unique = in->unique };
  struct iovec iov[2] = { { &h, sizeof h }, { reply_buf, 0 } };
  if (result < 0) h.error = result;
  else {
    iov[1].iov_len = (size_t)result;
    h.len += (uint32_t)result;
  }
  /* ENOENT: the request was interrupted and is gone; nothing to do. */
  if (writev(fuse_fd, iov, 2) < 0 && errno != ENOENT) die("writev /dev/fuse: %s", strerror(errno));
}

/* One request read from /dev/fuse; returns 0 when the connection is gone. */
static int serve_one_classic(void) {
  ssize_t got = read(fuse_fd, request_buf, sizeof request_buf);
  if (got < 0) {
    if (errno == ENODEV) return 0;
    if (errno == EINTR || errno == ENOENT || errno == EAGAIN) return 1;
    die("read /dev/fuse: %s", strerror(errno));
  }
  const struct fuse_in_header *in = (const struct fuse_in_header *)request_buf;
  const char *op = request_buf + sizeof *in;
  int result = handle(in, op, op + first_arg_size(in->opcode), reply_buf);
  if (result != NO_REPLY) reply_classic(in, result);
  return 1;
}

/* Drains /dev/fuse (forgets, interrupts) without blocking; 0 once the connection is gone. */
static int drain_dev(void) {
  for (;;) {
    ssize_t got = read(fuse_fd, request_buf, sizeof request_buf);
    if (got < 0) {
      if (errno == EAGAIN) return 1;
      if (errno == ENODEV) return 0;
      if (errno == EINTR || errno == ENOENT) continue;
      die("read /dev/fuse: %s", strerror(errno));
    }
    const struct fuse_in_header *in = (const struct fuse_in_header *)request_buf;
    const char *op = request_buf + sizeof *in;
    int result = handle(in, op, op + first_arg_size(in->opcode), reply_buf);
    if (result != NO_REPLY) reply_classic(in, result);
  }
}

static void serve_classic(int use_epoll) {
  if (!use_epoll) {
    while (serve_one_classic()) {}
    return;
  }
  /* As an event loop: sleep in epoll_wait, then read until EAGAIN. */
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = { .events = EPOLLIN };
  if (fcntl(fuse_fd, F_SETFL, O_NONBLOCK) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fuse_fd, &ev) < 0)
    die("epoll on /dev/fuse: %s", strerror(errno));
  for (;;) {
    if (epoll_wait(ep, &ev, 1, -1) < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait: %s", strerror(errno));
    }
    if (!drain_dev()) return;
  }
}

/* ------------------------------------------------------------------------
 * The ring: raw io_uring syscalls (Debian 12's headers know SQE128 and
 * URING_CMD; no liburing needed). */

struct ring {
  int fd;
  unsigned sq_entries, cq_entries;
  unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
  unsigned *cq_head, *cq_tail, *cq_mask;
  struct io_uring_cqe *cqes;
  struct io_uring_sqe *sqes; /* 128-byte entries: index with sqe_at() */
  unsigned pending; /* SQEs queued since the last io_uring_enter */
};

struct entry {
  struct fuse_uring_req_header header;
  struct iovec iov[2];
  uint16_t qid;
  char *payload;
};

static struct ring ring;
static struct entry *entries;
static unsigned n_entries;
#define POLL_TAG UINT64_MAX /* user_data of the poll on /dev/fuse (forgets still come that way) */

static struct io_uring_sqe *sqe_at(unsigned i) { return (struct io_uring_sqe *)((char *)ring.sqes + (size_t)i * 128); }

static struct io_uring_sqe *next_sqe(void) {
  unsigned tail = *ring.sq_tail;
  if (tail - __atomic_load_n(ring.sq_head, __ATOMIC_ACQUIRE) >= ring.sq_entries) die("submission queue full");
  unsigned i = tail & *ring.sq_mask;
  struct io_uring_sqe *s = sqe_at(i);
  memset(s, 0, 128);
  ring.sq_array[i] = i;
  __atomic_store_n(ring.sq_tail, tail + 1, __ATOMIC_RELEASE);
  ring.pending++;
  return s;
}

static int ring_enter(unsigned to_submit, unsigned min_complete, unsigned flags) {
  return (int)syscall(__NR_io_uring_enter, ring.fd, to_submit, min_complete, flags, NULL, 0);
}

static void ring_setup(unsigned want_entries, int defer_taskrun) {
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE;
  p.cq_entries = want_entries * 2;
  /* One thread submits and reaps: task work can wait until we enter the
   * kernel to wait, instead of interrupting us. */
  if (defer_taskrun) p.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  ring.fd = (int)syscall(__NR_io_uring_setup, want_entries, &p);
  if (ring.fd < 0) die("io_uring_setup: %s", strerror(errno));
  if (!(p.features & IORING_FEAT_SINGLE_MMAP)) die("io_uring without IORING_FEAT_SINGLE_MMAP");
  size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  size_t len = sq_len > cq_len ? sq_len : cq_len;
  char *sq = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring.fd, IORING_OFF_SQ_RING);
  if (sq == MAP_FAILED) die("mmap of the rings: %s", strerror(errno));
  ring.sqes = mmap(NULL, p.sq_entries * 128, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring.fd, IORING_OFF_SQES);
  if (ring.sqes == MAP_FAILED) die("mmap of the SQEs: %s", strerror(errno));
  ring.sq_entries = p.sq_entries;
  ring.cq_entries = p.cq_entries;
  ring.sq_head = (unsigned *)(sq + p.sq_off.head);
  ring.sq_tail = (unsigned *)(sq + p.sq_off.tail);
  ring.sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
  ring.sq_array = (unsigned *)(sq + p.sq_off.array);
  ring.cq_head = (unsigned *)(sq + p.cq_off.head);
  ring.cq_tail = (unsigned *)(sq + p.cq_off.tail);
  ring.cq_mask = (unsigned *)(sq + p.cq_off.ring_mask);
  ring.cqes = (struct io_uring_cqe *)(sq + p.cq_off.cqes);
}

static void queue_fuse_cmd(unsigned idx, uint32_t cmd, uint64_t commit_id) {
  struct entry *e = &entries[idx];
  struct io_uring_sqe *s = next_sqe();
  s->opcode = IORING_OP_URING_CMD;
  s->fd = fuse_fd;
  s->cmd_op = cmd;
  s->user_data = idx;
  if (cmd == FUSE_IO_URING_CMD_REGISTER) {
    /* The entry's buffers are given once; commits reuse them. */
    s->addr = (uint64_t)(uintptr_t)e->iov;
    s->len = 2;
  }
  struct fuse_uring_cmd_req *req = (struct fuse_uring_cmd_req *)s->cmd;
  req->qid = e->qid;
  req->commit_id = commit_id;
}

static void queue_poll(void) {
  struct io_uring_sqe *s = next_sqe();
  s->opcode = IORING_OP_POLL_ADD;
  s->fd = fuse_fd;
  s->poll32_events = POLLIN;
  s->user_data = POLL_TAG;
}

static unsigned possible_cpus(void) {
  /* The kernel makes one queue per possible CPU and routes a request to the
   * queue of the CPU its caller runs on: every queue must have entries. */
  FILE *f = fopen("/sys/devices/system/cpu/possible", "r");
  unsigned lo = 0, hi = 0;
  if (f == NULL || fscanf(f, "%u-%u", &lo, &hi) < 1) die("cannot read /sys/devices/system/cpu/possible");
  fclose(f);
  return (hi > lo ? hi : lo) + 1;
}

static void serve_ring(int use_epoll) {
  unsigned queues = possible_cpus();
  n_entries = queues * QUEUE_DEPTH;
  /* SQ room for every entry's command plus the poll. */
  /* Deferred task work (a request landing in an entry is task work) suits
   * the thread that waits in io_uring_enter; woken through the eventfd it
   * stalled (DEVELOPERS.md, FUSE over io_uring), so that mode lets the
   * kernel run task work as it comes. */
  ring_setup(n_entries + 1 < 8 ? 8 : n_entries + 1, !use_epoll);
  entries = calloc(n_entries, sizeof *entries);
  for (unsigned i = 0; i < n_entries; i++) {
    struct entry *e = &entries[i];
    e->qid = (uint16_t)(i / QUEUE_DEPTH);
    e->payload = aligned_alloc(4096, BUF_SIZE);
    e->iov[0] = (struct iovec){ &e->header, sizeof e->header };
    e->iov[1] = (struct iovec){ e->payload, BUF_SIZE };
    queue_fuse_cmd(i, FUSE_IO_URING_CMD_REGISTER, 0);
  }
  if (fcntl(fuse_fd, F_SETFL, O_NONBLOCK) < 0) die("fcntl /dev/fuse: %s", strerror(errno));
  queue_poll();
  int ep = -1, evfd = -1;
  if (use_epoll) {
    /* What libuv would see: an eventfd the ring signals on each completion
     * (also for deferred task work: a request arriving), polled by epoll. */
    evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (syscall(__NR_io_uring_register, ring.fd, IORING_REGISTER_EVENTFD, &evfd, 1) < 0)
      die("IORING_REGISTER_EVENTFD: %s", strerror(errno));
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, evfd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
  }
  /* REGISTER runs as it is submitted (it completes only when a request
   * lands in the entry), so once submitted the ring is ready -- unless the
   * kernel refused, which completes the command at once with an error. */
  unsigned submit_all = ring.pending;
  ring.pending = 0;
  if (ring_enter(submit_all, 0, IORING_ENTER_GETEVENTS) < 0)
    die("io_uring_enter (register): %s", strerror(errno));
  unsigned head0 = *ring.cq_head, tail0 = __atomic_load_n(ring.cq_tail, __ATOMIC_ACQUIRE);
  for (; head0 != tail0; head0++) {
    struct io_uring_cqe *c = &ring.cqes[head0 & *ring.cq_mask];
    if (c->user_data != POLL_TAG && c->res < 0) {
      fprintf(stderr, "no-uring: FUSE_IO_URING_CMD_REGISTER failed: %s\n", strerror(-c->res));
      umount2(mountpoint, MNT_DETACH);
      exit(3);
    }
  }
  printf("ready\n");
  fflush(stdout);
  int alive = (int)n_entries, dev_alive = 1;
  while (alive > 0 || dev_alive) {
    unsigned submit = ring.pending;
    ring.pending = 0;
    if (use_epoll) {
      if (ring_enter(submit, 0, IORING_ENTER_GETEVENTS) < 0 && errno != EINTR) die("io_uring_enter: %s", strerror(errno));
      if (__atomic_load_n(ring.cq_tail, __ATOMIC_ACQUIRE) == *ring.cq_head) {
        struct epoll_event ev;
        uint64_t v;
        if (epoll_wait(ep, &ev, 1, -1) < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        if (read(evfd, &v, sizeof v) < 0 && errno != EAGAIN) die("read eventfd: %s", strerror(errno));
        /* Runs the deferred task work that fills the entries, and reaps. */
        if (ring_enter(0, 0, IORING_ENTER_GETEVENTS) < 0 && errno != EINTR) die("io_uring_enter: %s", strerror(errno));
      }
    } else if (ring_enter(submit, 1, IORING_ENTER_GETEVENTS) < 0 && errno != EINTR) {
      die("io_uring_enter: %s", strerror(errno));
    }
    unsigned head = *ring.cq_head, tail = __atomic_load_n(ring.cq_tail, __ATOMIC_ACQUIRE);
    for (; head != tail; head++) {
      struct io_uring_cqe *c = &ring.cqes[head & *ring.cq_mask];
      if (c->user_data == POLL_TAG) {
        if (!dev_alive) continue;
        dev_alive = drain_dev() && !(c->res > 0 && (c->res & (POLLERR | POLLHUP)));
        if (dev_alive) queue_poll();
        continue;
      }
      struct entry *e = &entries[c->user_data];
      if (c->res < 0) {
        /* ENOTCONN/ECANCELED: the connection is going away. */
        if (c->res != -ENOTCONN && c->res != -ECANCELED && c->res != -ECONNABORTED)
          fprintf(stderr, "memfs-ring: ring entry %llu: %s\n", (unsigned long long)c->user_data, strerror(-c->res));
        alive--;
        continue;
      }
      const struct fuse_in_header in = *(const struct fuse_in_header *)e->header.in_out;
      uint64_t commit_id = e->header.ring_ent_in_out.commit_id;
      counts[COUNT_VIA_RING]++;
      int result = handle(&in, e->header.op_in, e->payload, e->payload);
      struct fuse_out_header *out = (struct fuse_out_header *)e->header.in_out;
      memset(out, 0, sizeof *out);
      out->unique = in.unique;
      out->len = sizeof *out;
      if (result < 0) {
        out->error = result;
        e->header.ring_ent_in_out.payload_sz = 0;
      } else {
        out->len += (uint32_t)result;
        e->header.ring_ent_in_out.payload_sz = (uint32_t)result;
      }
      queue_fuse_cmd((unsigned)c->user_data, FUSE_IO_URING_CMD_COMMIT_AND_FETCH, commit_id);
    }
    __atomic_store_n(ring.cq_head, head, __ATOMIC_RELEASE);
  }
}

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: memfs-ring classic|classic-epoll|uring|uring-epoll MNT [--counts FILE]\n");
    return 2;
  }
  const char *mode = argv[1];
  mountpoint = argv[2];
  int ring_mode = strncmp(mode, "uring", 5) == 0;
  int use_epoll = strstr(mode, "-epoll") != NULL;
  if (strcmp(mode, "classic") && strcmp(mode, "classic-epoll") && strcmp(mode, "uring") && strcmp(mode, "uring-epoll"))
    die("unknown mode %s", mode);
  counts = calloc(4096 / sizeof *counts, sizeof *counts);
  if (argc >= 5 && strcmp(argv[3], "--counts") == 0) {
    int fd = open(argv[4], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || ftruncate(fd, 4096) < 0) die("%s: %s", argv[4], strerror(errno));
    counts = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (counts == MAP_FAILED) die("mmap %s: %s", argv[4], strerror(errno));
    close(fd);
  }
  make_at(FUSE_ROOT_ID, S_IFDIR | 0755, 0, 0);

  do_mount();
  int ring_on = do_init(ring_mode);
  if (ring_mode && !ring_on) {
    fprintf(stderr, "no-uring: the kernel did not offer FUSE_OVER_IO_URING (/sys/module/fuse/parameters/enable_uring is N?)\n");
    umount2(mountpoint, MNT_DETACH);
    return 3;
  }
  if (ring_on) {
    serve_ring(use_epoll);
  } else {
    printf("ready\n");
    fflush(stdout);
    serve_classic(use_epoll);
  }
  return 0;
}

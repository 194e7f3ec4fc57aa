// Positioned I/O and the other per-fd calls: pread, pwrite, ftruncate,
// punchHole, fallocate, mmapCopy, fdatasync, close; plus alignedBuffer for O_DIRECT.
#include <sys/file.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "addon.h"
#include "errors.h"

namespace rmapfs {

namespace {

// Common argument handling for pread/pwrite:
// (fd, buf, bufOffset, length, position).
struct IoArgs {
  int fd;
  uint8_t* data;
  size_t length;
  uint64_t position;
};

IoArgs ParseIoArgs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IoArgs a;
  a.fd = ArgFd(info, 0, "fd");
  BufferArg buf = ArgBuffer(info, 1, "buf");
  uint64_t offset = ArgUint(info, 2, "bufOffset");
  uint64_t length = ArgUint(info, 3, "length");
  a.position = ArgUint(info, 4, "position");
  CheckRange(env, buf.length, offset, length);
  a.data = buf.data + offset;
  a.length = static_cast<size_t>(length);
  return a;
}

}  // namespace

Napi::Value Pread(const Napi::CallbackInfo& info) {
  IoArgs a = ParseIoArgs(info);
  size_t done = 0;
  while (done < a.length) {
    ssize_t n = ::pread(a.fd, a.data + done, a.length - done,
                        static_cast<off_t>(a.position + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      ThrowErrno(info.Env(), errno, "pread");
    }
    if (n == 0) break;  // end of file
    done += static_cast<size_t>(n);
  }
  return Napi::Number::New(info.Env(), static_cast<double>(done));
}

Napi::Value Pwrite(const Napi::CallbackInfo& info) {
  IoArgs a = ParseIoArgs(info);
  size_t done = 0;
  while (done < a.length) {
    ssize_t n = ::pwrite(a.fd, a.data + done, a.length - done,
                         static_cast<off_t>(a.position + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      ThrowErrno(info.Env(), errno, "pwrite");
    }
    if (n == 0) ThrowErrno(info.Env(), EIO, "pwrite");  // no progress: give up
    done += static_cast<size_t>(n);
  }
  return Napi::Number::New(info.Env(), static_cast<double>(done));
}

Napi::Value Ftruncate(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  uint64_t size = ArgUint(info, 1, "size");
  while (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    if (errno != EINTR) ThrowErrno(info.Env(), errno, "ftruncate");
  }
  return info.Env().Undefined();
}

namespace {

// fallocate(2), retried on EINTR; throws the errno.
void FallocateOrThrow(Napi::Env env, int fd, int mode, uint64_t offset, uint64_t length) {
  while (::fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(length)) != 0) {
    if (errno != EINTR) ThrowErrno(env, errno, "fallocate");
  }
}

}  // namespace

Napi::Value PunchHole(const Napi::CallbackInfo& info) {
  FallocateOrThrow(info.Env(), ArgFd(info, 0, "fd"), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                   ArgUint(info, 1, "offset"), ArgUint(info, 2, "length"));
  return info.Env().Undefined();
}

// fallocate(fd, mode, offset, length): every mode, as the caller asks (the data checker's).
Napi::Value Fallocate(const Napi::CallbackInfo& info) {
  FallocateOrThrow(info.Env(), ArgFd(info, 0, "fd"), static_cast<int>(ArgUint(info, 1, "mode")),
                   ArgUint(info, 2, "offset"), ArgUint(info, 3, "length"));
  return info.Env().Undefined();
}

// mmapCopy(fd, buf, position, toFile): buf's bytes to or from the file at position through a shared
// mapping of those pages (then msync(MS_SYNC) after a copy in, munmap): what mmap readers and writers do.
Napi::Value MmapCopy(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  BufferArg buf = ArgBuffer(info, 1, "buf");
  uint64_t position = ArgUint(info, 2, "position");
  bool toFile = info[3].ToBoolean().Value();
  if (buf.length == 0) return info.Env().Undefined();
  uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint64_t start = position - position % page;
  size_t span = static_cast<size_t>(position + buf.length - start);
  void* map = ::mmap(nullptr, span, toFile ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, static_cast<off_t>(start));
  if (map == MAP_FAILED) ThrowErrno(info.Env(), errno, "mmap");
  uint8_t* at = static_cast<uint8_t*>(map) + (position - start);
  int err = 0;
  if (toFile) {
    std::memcpy(at, buf.data, buf.length);
    if (::msync(map, span, MS_SYNC) != 0) err = errno;
  } else {
    std::memcpy(buf.data, at, buf.length);
  }
  ::munmap(map, span);
  if (err != 0) ThrowErrno(info.Env(), err, "msync");
  return info.Env().Undefined();
}

Napi::Value Fdatasync(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  while (::fdatasync(fd) != 0) {
    if (errno != EINTR) ThrowErrno(info.Env(), errno, "fdatasync");
  }
  return info.Env().Undefined();
}

// clockCoarse() -> [sec, nsec]: CLOCK_REALTIME_COARSE, the clock the kernel
// stamps file times with (current_time), so times the daemon sets compare
// with the times the kernel hands it (the writeback cache's mtime) as
// ext4's compare with each other.
Napi::Value ClockCoarse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  timespec ts{};
  if (::clock_gettime(CLOCK_REALTIME_COARSE, &ts) != 0) ThrowErrno(env, errno, "clock_gettime");
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, static_cast<double>(ts.tv_sec)));
  out.Set(1u, Napi::Number::New(env, static_cast<double>(ts.tv_nsec)));
  return out;
}

// flock(fd, LOCK_EX | LOCK_NB): true when taken, false when another open file holds it.
Napi::Value LockExclusive(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(info.Env(), false);
    if (errno != EINTR) ThrowErrno(info.Env(), errno, "flock");
  }
  return Napi::Boolean::New(info.Env(), true);
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  // On Linux the descriptor is released even when close() reports EINTR, so
  // retrying could close someone else's fd; EINTR counts as success.
  if (::close(fd) != 0 && errno != EINTR) ThrowErrno(info.Env(), errno, "close");
  return info.Env().Undefined();
}

Napi::Value AlignedBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  // Cap at 2^32 - 1 (Node's buffer.constants.MAX_LENGTH on 64-bit, Node 20).
  uint64_t size = ArgUint(info, 0, "size", std::numeric_limits<uint32_t>::max());
  uint64_t alignment = ArgUint(info, 1, "alignment", uint64_t{1} << 30);
  if (alignment < sizeof(void*) || (alignment & (alignment - 1)) != 0) {
    ThrowRangeError(env, "The \"alignment\" argument must be a power of two >= " +
                             std::to_string(sizeof(void*)));
  }
  void* mem = nullptr;
  // posix_memalign(0) may hand back NULL; always ask for at least one byte.
  int err = ::posix_memalign(&mem, static_cast<size_t>(alignment),
                             size == 0 ? 1 : static_cast<size_t>(size));
  if (err != 0) ThrowErrno(env, err, "posix_memalign");
  std::memset(mem, 0, size == 0 ? 1 : static_cast<size_t>(size));
  try {
    return Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(mem),
                                      static_cast<size_t>(size),
                                      [](Napi::Env, uint8_t* data) { std::free(data); });
  } catch (...) {
    std::free(mem);
    throw;
  }
}

}  // namespace rmapfs

#include "errors.h"

#include <cerrno>
#include <cmath>
#include <cstring>

namespace rmapfs {

std::string ErrnoName(int err) {
  switch (err) {
#define RMAPFS_ERRNO(e) \
  case e:               \
    return #e;
    RMAPFS_ERRNO(EPERM)
    RMAPFS_ERRNO(ENOENT)
    RMAPFS_ERRNO(ESRCH)
    RMAPFS_ERRNO(EINTR)
    RMAPFS_ERRNO(EIO)
    RMAPFS_ERRNO(ENXIO)
    RMAPFS_ERRNO(E2BIG)
    RMAPFS_ERRNO(ENOEXEC)
    RMAPFS_ERRNO(EBADF)
    RMAPFS_ERRNO(ECHILD)
    RMAPFS_ERRNO(EAGAIN)
    RMAPFS_ERRNO(ENOMEM)
    RMAPFS_ERRNO(EACCES)
    RMAPFS_ERRNO(EFAULT)
    RMAPFS_ERRNO(ENOTBLK)
    RMAPFS_ERRNO(EBUSY)
    RMAPFS_ERRNO(EEXIST)
    RMAPFS_ERRNO(EXDEV)
    RMAPFS_ERRNO(ENODEV)
    RMAPFS_ERRNO(ENOTDIR)
    RMAPFS_ERRNO(EISDIR)
    RMAPFS_ERRNO(EINVAL)
    RMAPFS_ERRNO(ENFILE)
    RMAPFS_ERRNO(EMFILE)
    RMAPFS_ERRNO(ENOTTY)
    RMAPFS_ERRNO(ETXTBSY)
    RMAPFS_ERRNO(EFBIG)
    RMAPFS_ERRNO(ENOSPC)
    RMAPFS_ERRNO(ESPIPE)
    RMAPFS_ERRNO(EROFS)
    RMAPFS_ERRNO(EMLINK)
    RMAPFS_ERRNO(EPIPE)
    RMAPFS_ERRNO(EDOM)
    RMAPFS_ERRNO(ERANGE)
    RMAPFS_ERRNO(EDEADLK)
    RMAPFS_ERRNO(ENAMETOOLONG)
    RMAPFS_ERRNO(ENOLCK)
    RMAPFS_ERRNO(ENOSYS)
    RMAPFS_ERRNO(ENOTEMPTY)
    RMAPFS_ERRNO(ELOOP)
    RMAPFS_ERRNO(ENOMSG)
    RMAPFS_ERRNO(ENODATA)
    RMAPFS_ERRNO(ENOLINK)
    RMAPFS_ERRNO(EPROTO)
    RMAPFS_ERRNO(EOVERFLOW)
    RMAPFS_ERRNO(EBADFD)
    RMAPFS_ERRNO(EILSEQ)
    RMAPFS_ERRNO(EUSERS)
    RMAPFS_ERRNO(ENOTSOCK)
    RMAPFS_ERRNO(EOPNOTSUPP)
    RMAPFS_ERRNO(EADDRINUSE)
    RMAPFS_ERRNO(ENETDOWN)
    RMAPFS_ERRNO(ECONNRESET)
    RMAPFS_ERRNO(ENOBUFS)
    RMAPFS_ERRNO(ETIMEDOUT)
    RMAPFS_ERRNO(ECONNREFUSED)
    RMAPFS_ERRNO(ESTALE)
    RMAPFS_ERRNO(EDQUOT)
    RMAPFS_ERRNO(ECANCELED)
    RMAPFS_ERRNO(EUCLEAN)
    RMAPFS_ERRNO(ENOMEDIUM)
    RMAPFS_ERRNO(EMEDIUMTYPE)
#undef RMAPFS_ERRNO
    default:
      return "E" + std::to_string(err);
  }
}

namespace {

// strerror text with a lower-case first letter, the way libuv/Node word it.
std::string Describe(int err) {
  char buf[256];
  const char* s;
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
  s = strerror_r(err, buf, sizeof buf);  // GNU variant returns the string
#else
  s = strerror_r(err, buf, sizeof buf) == 0 ? buf : "unknown error";
#endif
  std::string text(s ? s : "unknown error");
  if (!text.empty() && text[0] >= 'A' && text[0] <= 'Z') {
    text[0] = static_cast<char>(text[0] - 'A' + 'a');
  }
  return text;
}

}  // namespace

void ThrowErrno(Napi::Env env, int err, const char* syscall, const char* path) {
  std::string code = ErrnoName(err);
  std::string message = code + ": " + Describe(err) + ", " + syscall;
  if (path != nullptr) {
    message += " '";
    message += path;
    message += "'";
  }
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("code", Napi::String::New(env, code));
  error.Set("syscall", Napi::String::New(env, syscall));
  if (path != nullptr) error.Set("path", Napi::String::New(env, path));
  throw error;
}

void ThrowTypeError(Napi::Env env, const std::string& msg) {
  throw Napi::TypeError::New(env, msg);
}

void ThrowRangeError(Napi::Env env, const std::string& msg) {
  throw Napi::RangeError::New(env, msg);
}

namespace {

// Returns the argument as a finite integral double, or throws.
double IntegerArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Env env = info.Env();
  if (!info[i].IsNumber()) {
    ThrowTypeError(env, std::string("The \"") + name + "\" argument must be a number");
  }
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(v) || std::trunc(v) != v) {
    ThrowRangeError(env, std::string("The \"") + name + "\" argument must be an integer");
  }
  return v;
}

}  // namespace

int ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name) {
  double v = IntegerArg(info, i, name);
  if (v < 0 || v > 2147483647.0) {
    ThrowRangeError(info.Env(), std::string("The \"") + name +
                                    "\" argument must be a file descriptor (0 .. 2^31-1)");
  }
  return static_cast<int>(v);
}

uint64_t ArgUint(const Napi::CallbackInfo& info, size_t i, const char* name,
                 uint64_t max) {
  double v = IntegerArg(info, i, name);
  if (v < 0 || v > static_cast<double>(max)) {
    ThrowRangeError(info.Env(), std::string("The \"") + name +
                                    "\" argument must be >= 0 and <= " + std::to_string(max));
  }
  return static_cast<uint64_t>(v);
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i,
                      const char* name) {
  if (!info[i].IsString()) {
    ThrowTypeError(info.Env(), std::string("The \"") + name + "\" argument must be a string");
  }
  std::string s = info[i].As<Napi::String>().Utf8Value();
  if (s.find('\0') != std::string::npos) {
    ThrowTypeError(info.Env(), std::string("The \"") + name +
                                   "\" argument must not contain null bytes");
  }
  return s;
}

bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info[i].IsUndefined()) return false;
  if (!info[i].IsBoolean()) {
    ThrowTypeError(info.Env(), std::string("The \"") + name + "\" argument must be a boolean");
  }
  return info[i].As<Napi::Boolean>().Value();
}

BufferArg ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsBuffer()) {
    ThrowTypeError(info.Env(), std::string("The \"") + name + "\" argument must be a Buffer");
  }
  auto buf = info[i].As<Napi::Buffer<uint8_t>>();
  return BufferArg{buf.Data(), buf.Length()};
}

void CheckRange(Napi::Env env, size_t bufferLength, uint64_t offset,
                uint64_t length) {
  if (offset > bufferLength || length > bufferLength - offset) {
    ThrowRangeError(env, "offset " + std::to_string(offset) + " + length " +
                             std::to_string(length) + " is outside the buffer (length " +
                             std::to_string(bufferLength) + ")");
  }
}

}  // namespace rmapfs

// deviceOpen and fdInfo: opening block devices / image files and asking
// how big they are.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "addon.h"
#include "errors.h"

namespace rmapfs {

namespace {

bool OptionFlag(Napi::Env env, Napi::Object options, const char* key) {
  Napi::Value v = options.Get(key);
  if (v.IsUndefined()) return false;
  if (!v.IsBoolean()) {
    ThrowTypeError(env, std::string("The \"options.") + key + "\" property must be a boolean");
  }
  return v.As<Napi::Boolean>().Value();
}

}  // namespace

// deviceOpen(path: string, options: {readOnly?, direct?, exclusive?}): number
Napi::Value DeviceOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  bool readOnly = false, direct = false, exclusive = false;
  if (!info[1].IsUndefined() && !info[1].IsNull()) {
    if (!info[1].IsObject()) ThrowTypeError(env, "The \"options\" argument must be an object");
    Napi::Object options = info[1].As<Napi::Object>();
    readOnly = OptionFlag(env, options, "readOnly");
    direct = OptionFlag(env, options, "direct");
    exclusive = OptionFlag(env, options, "exclusive");
  }

  int flags = (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  if (direct) flags |= O_DIRECT;
  if (exclusive) {
    // O_EXCL without O_CREAT means "claim exclusively" only for block
    // devices; elsewhere it is undefined, so add it only for those. If the
    // stat fails, let open() report the problem.
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && S_ISBLK(st.st_mode)) flags |= O_EXCL;
  }
  int fd;
  do {
    fd = ::open(path.c_str(), flags);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) ThrowErrno(env, errno, "open", path.c_str());
  return Napi::Number::New(env, fd);
}

// fdInfo(fd): {isBlockDevice, isRegularFile, size, sectorSize, bytesHeld}
Napi::Value FdInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  struct stat st;
  if (::fstat(fd, &st) != 0) ThrowErrno(env, errno, "fstat");

  bool isBlock = S_ISBLK(st.st_mode);
  double size;
  double sectorSize = 512;
  if (isBlock) {
    uint64_t bytes = 0;
    if (::ioctl(fd, BLKGETSIZE64, &bytes) != 0) ThrowErrno(env, errno, "ioctl");
    int ssz = 0;
    if (::ioctl(fd, BLKSSZGET, &ssz) != 0) ThrowErrno(env, errno, "ioctl");
    size = static_cast<double>(bytes);
    sectorSize = ssz;
  } else {
    size = static_cast<double>(st.st_size);
  }

  Napi::Object o = Napi::Object::New(env);
  o.Set("isBlockDevice", Napi::Boolean::New(env, isBlock));
  o.Set("isRegularFile", Napi::Boolean::New(env, S_ISREG(st.st_mode)));
  o.Set("size", Napi::Number::New(env, size));
  o.Set("sectorSize", Napi::Number::New(env, sectorSize));
  o.Set("bytesHeld", Napi::Number::New(env, static_cast<double>(st.st_blocks) * 512.0));
  return o;
}

}  // namespace rmapfs

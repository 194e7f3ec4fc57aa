// xfileCreate: an anonymous scratch file, memfd_create() first, else an
// O_TMPFILE file in a directory.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "addon.h"
#include "errors.h"

namespace rmapfs {

namespace {

Napi::Object Handle(Napi::Env env, int fd, const char* kind) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("fd", Napi::Number::New(env, fd));
  o.Set("kind", Napi::String::New(env, kind));
  return o;
}

}  // namespace

// xfileCreate(name: string, dir: string | null, forceTmpfile: boolean)
Napi::Value XfileCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgString(info, 0, "name");
  std::string dir;
  if (!info[1].IsNull() && !info[1].IsUndefined()) {
    dir = ArgString(info, 1, "dir");
  }
  bool forceTmpfile = ArgBool(info, 2, "forceTmpfile");

  if (!forceTmpfile) {
    int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC);
    if (fd >= 0) return Handle(env, fd, "memfd");
    // Any failure (ENOSYS, EINVAL for a long name, seccomp...) falls through.
  }

  if (dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    dir = (tmp != nullptr && tmp[0] != '\0') ? tmp : "/tmp";
  }
  int fd;
  do {
    fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) ThrowErrno(env, errno, "open", dir.c_str());
  return Handle(env, fd, "tmpfile");
}

}  // namespace rmapfs

// Module registration for rmapfs_native. Each export is a thin wrapper over a
// single system call or routine; see src/native/index.ts for the contract.
#include <napi.h>

#include <exception>
#include <new>

#include "addon.h"

namespace {

// node-addon-api converts a thrown Napi::Error into a JS exception, but any
// other C++ exception (std::bad_alloc from a std::string, say) would reach
// the N-API boundary and terminate the process. Convert those too.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value Guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  } catch (...) {
    throw Napi::Error::New(info.Env(), "unknown C++ exception in rmapfs_native");
  }
}

template <Napi::Value (*F)(const Napi::CallbackInfo&)>
void Export(Napi::Env env, Napi::Object exports, const char* name) {
  exports.Set(name, Napi::Function::New(env, Guarded<F>, name));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace rmapfs;
  Export<XfileCreate>(env, exports, "xfileCreate");
  Export<DeviceOpen>(env, exports, "deviceOpen");
  Export<FdInfo>(env, exports, "fdInfo");
  Export<Pread>(env, exports, "pread");
  Export<Pwrite>(env, exports, "pwrite");
  Export<Ftruncate>(env, exports, "ftruncate");
  Export<PunchHole>(env, exports, "punchHole");
  Export<Fallocate>(env, exports, "fallocate");
  Export<MmapCopy>(env, exports, "mmapCopy");
  Export<Fdatasync>(env, exports, "fdatasync");
  Export<ClockCoarse>(env, exports, "clockCoarse");
  Export<LockExclusive>(env, exports, "lockExclusive");
  Export<Close>(env, exports, "close");
  Export<AlignedBuffer>(env, exports, "alignedBuffer");
  Export<Crc32c>(env, exports, "crc32c");
  Export<Crc32cTable>(env, exports, "crc32cTable");
  Export<Crc32cImplementation>(env, exports, "crc32cImplementation");
  return exports;
}

}  // namespace

NODE_API_MODULE(rmapfs_native, Init)

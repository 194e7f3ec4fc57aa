// The functions the rmapfs addon exports (see src/native/index.ts).
#pragma once

#include <napi.h>

namespace rmapfs {

// xfile.cc
Napi::Value XfileCreate(const Napi::CallbackInfo& info);
// device.cc
Napi::Value DeviceOpen(const Napi::CallbackInfo& info);
Napi::Value FdInfo(const Napi::CallbackInfo& info);
// fileio.cc
Napi::Value Pread(const Napi::CallbackInfo& info);
Napi::Value Pwrite(const Napi::CallbackInfo& info);
Napi::Value Ftruncate(const Napi::CallbackInfo& info);
Napi::Value PunchHole(const Napi::CallbackInfo& info);
Napi::Value Fallocate(const Napi::CallbackInfo& info);
Napi::Value MmapCopy(const Napi::CallbackInfo& info);
Napi::Value Fdatasync(const Napi::CallbackInfo& info);
Napi::Value ClockCoarse(const Napi::CallbackInfo& info);
Napi::Value LockExclusive(const Napi::CallbackInfo& info);
Napi::Value Close(const Napi::CallbackInfo& info);
Napi::Value AlignedBuffer(const Napi::CallbackInfo& info);
// crc32c.cc
Napi::Value Crc32c(const Napi::CallbackInfo& info);
Napi::Value Crc32cTable(const Napi::CallbackInfo& info);
Napi::Value Crc32cImplementation(const Napi::CallbackInfo& info);

}  // namespace rmapfs

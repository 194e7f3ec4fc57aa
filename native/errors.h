// Error construction and argument validation shared by the rmapfs addon.
//
// System call failures become JS Errors shaped like Node's fs errors:
//   { message: "ENOENT: no such file or directory, open '/x'",
//     code: "ENOENT", errno: 2, syscall: "open", path: "/x" }
// Bad arguments become TypeError / RangeError. Everything is thrown as a C++
// Napi::Error, which node-addon-api turns into a pending JS exception.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace rmapfs {

// "ENOENT" for ENOENT, ..., "E<number>" for anything not in the table.
std::string ErrnoName(int err);

// Throws the Error described above. `path` may be null.
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const char* syscall,
                             const char* path = nullptr);

[[noreturn]] void ThrowTypeError(Napi::Env env, const std::string& msg);
[[noreturn]] void ThrowRangeError(Napi::Env env, const std::string& msg);

// Largest integer a JS number holds exactly: 2^53 - 1.
constexpr uint64_t kMaxSafeInteger = (uint64_t{1} << 53) - 1;

// A non-negative int32 file descriptor.
int ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name);

// A non-negative integer no larger than `max` (default 2^53 - 1).
uint64_t ArgUint(const Napi::CallbackInfo& info, size_t i, const char* name,
                 uint64_t max = kMaxSafeInteger);

// A string without embedded NUL bytes.
std::string ArgString(const Napi::CallbackInfo& info, size_t i,
                      const char* name);

// true/false; undefined counts as false.
bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* name);

// A Buffer (or other ArrayBufferView); its bytes.
struct BufferArg {
  uint8_t* data;
  size_t length;
};
BufferArg ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* name);

// Checks offset + length <= bufferLength without overflow (RangeError).
void CheckRange(Napi::Env env, size_t bufferLength, uint64_t offset,
                uint64_t length);

}  // namespace rmapfs

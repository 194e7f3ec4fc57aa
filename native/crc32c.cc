// crc32c (Castagnoli, reflected polynomial 0x82F63B78), with the usual
// conventions: the register starts at ~seed and the result is inverted, so
// crc32c("123456789", seed 0) == 0xE3069283 and
// crc32c(b, crc32c(a)) == crc32c(a + b).
//
// Two implementations: a portable slicing-by-8 table, and SSE4.2's crc32
// instruction, compiled per-function with target("sse4.2") and picked at
// run time with __builtin_cpu_supports (the rest of the addon is built for
// the baseline CPU).
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define RMAPFS_HAVE_SSE42 1
#endif

#include "addon.h"
#include "errors.h"

namespace rmapfs {

namespace {

constexpr uint32_t kPoly = 0x82F63B78u;

struct Tables {
  uint32_t t[8][256];
};

constexpr Tables MakeTables() {
  Tables tables{};
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    tables.t[0][i] = c;
  }
  for (int s = 1; s < 8; s++) {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t prev = tables.t[s - 1][i];
      tables.t[s][i] = (prev >> 8) ^ tables.t[0][prev & 0xff];
    }
  }
  return tables;
}

constexpr Tables kTables = MakeTables();

inline uint32_t Load32Le(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) |
         (uint32_t{p[3]} << 24);
}

uint32_t Crc32cTableImpl(uint32_t seed, const uint8_t* p, size_t n) {
  const auto& T = kTables.t;
  uint32_t crc = ~seed;
  while (n >= 8) {
    uint32_t lo = crc ^ Load32Le(p);
    uint32_t hi = Load32Le(p + 4);
    crc = T[7][lo & 0xff] ^ T[6][(lo >> 8) & 0xff] ^ T[5][(lo >> 16) & 0xff] ^
          T[4][lo >> 24] ^ T[3][hi & 0xff] ^ T[2][(hi >> 8) & 0xff] ^
          T[1][(hi >> 16) & 0xff] ^ T[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) crc = (crc >> 8) ^ T[0][(crc ^ *p++) & 0xff];
  return ~crc;
}

#ifdef RMAPFS_HAVE_SSE42
__attribute__((target("sse4.2")))
uint32_t Crc32cSse42Impl(uint32_t seed, const uint8_t* p, size_t n) {
  uint32_t crc = ~seed;
  // Byte steps up to 8-byte alignment, then 8 bytes at a time.
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    crc = _mm_crc32_u8(crc, *p++);
    n--;
  }
#if defined(__x86_64__)
  uint64_t c64 = crc;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c64 = _mm_crc32_u64(c64, v);
    p += 8;
    n -= 8;
  }
  crc = static_cast<uint32_t>(c64);
#endif
  while (n >= 4) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    crc = _mm_crc32_u32(crc, v);
    p += 4;
    n -= 4;
  }
  while (n-- > 0) crc = _mm_crc32_u8(crc, *p++);
  return ~crc;
}
#endif

using CrcFn = uint32_t (*)(uint32_t, const uint8_t*, size_t);

struct Choice {
  CrcFn fn;
  const char* name;
};

Choice Choose() {
#ifdef RMAPFS_HAVE_SSE42
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2")) return Choice{Crc32cSse42Impl, "sse4.2"};
#endif
  return Choice{Crc32cTableImpl, "table"};
}

const Choice& Best() {
  static const Choice choice = Choose();
  return choice;
}

// (buf, offset, length, seed)
Napi::Value Run(const Napi::CallbackInfo& info, CrcFn fn) {
  Napi::Env env = info.Env();
  BufferArg buf = ArgBuffer(info, 0, "buf");
  uint64_t offset = ArgUint(info, 1, "offset");
  uint64_t length = ArgUint(info, 2, "length");
  uint64_t seed = ArgUint(info, 3, "seed", 0xFFFFFFFFu);
  CheckRange(env, buf.length, offset, length);
  uint32_t crc = fn(static_cast<uint32_t>(seed), buf.data + offset, static_cast<size_t>(length));
  return Napi::Number::New(env, static_cast<double>(crc));
}

}  // namespace

Napi::Value Crc32c(const Napi::CallbackInfo& info) { return Run(info, Best().fn); }

Napi::Value Crc32cTable(const Napi::CallbackInfo& info) {
  return Run(info, Crc32cTableImpl);
}

Napi::Value Crc32cImplementation(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), Best().name);
}

}  // namespace rmapfs

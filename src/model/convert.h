#pragma once
// Weight dtype conversions shared by the checkpoint loaders and the test kit's writers.
// Scalar helpers are inline; the bulk versions read their source through memcpy, so `src` may be
// unaligned (a tensor inside a memory-mapped file).
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace razor::convert {

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest, ties to even; NaN stays NaN (quiet), infinities stay infinite.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// IEEE 754 binary16 -> binary32 (exact: subnormals, infinities and NaN included).
inline float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);  // inf / NaN
  } else if (exp != 0) {
    u = sign | ((exp + 112u) << 23) | (man << 13);  // normal: rebias 15 -> 127
  } else if (man == 0) {
    u = sign;  // signed zero
  } else {
    // subnormal: value = man * 2^-24; normalise
    int e = -1;
    do {
      man <<= 1;
      ++e;
    } while ((man & 0x400u) == 0);
    u = sign | (static_cast<uint32_t>(112 - e) << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// binary32 -> binary16, round to nearest even; overflow goes to infinity, tiny values to
// subnormals or zero, NaN stays NaN.
uint16_t f32_to_f16(float f);

// Bulk conversions of n values. dst must not overlap src.
void bf16_to_f32(const void* src, float* dst, size_t n);
void f16_to_f32(const void* src, float* dst, size_t n);
void f32_to_bf16(const float* src, uint16_t* dst, size_t n);
void f32_to_f16(const float* src, uint16_t* dst, size_t n);

}  // namespace razor::convert

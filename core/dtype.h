// Element types. f64 exists on the CPU so gradients can be checked by finite differences;
// CUDA kernels are f32 (plus integer types for indices).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace idem {

enum class DType : uint8_t { f32, f64, i32, i64, u8 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::u8: return 1;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::u8: return "u8";
  }
  return "?";
}

inline bool is_floating(DType t) { return t == DType::f32 || t == DType::f64; }

// Maps a C++ type to its DType: dtype_of<float>() == DType::f32.
template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }

}  // namespace idem

// Calls the generic lambda-like body with `scalar_t` bound to the C++ type of `dt`.
// IDEM_DISPATCH_FLOAT covers f32/f64; IDEM_DISPATCH_ALL covers every dtype.
#define IDEM_DISPATCH_CASE(enum_v, type, ...) \
  case ::idem::DType::enum_v: {               \
    using scalar_t = type;                    \
    __VA_ARGS__();                            \
    break;                                    \
  }

#define IDEM_DISPATCH_FLOAT(dt, op, ...)                                                  \
  switch (dt) {                                                                           \
    IDEM_DISPATCH_CASE(f32, float, __VA_ARGS__)                                           \
    IDEM_DISPATCH_CASE(f64, double, __VA_ARGS__)                                          \
    default: ::idem::fail(op, "expected a floating dtype (f32/f64), got ", ::idem::dtype_name(dt)); \
  }

#define IDEM_DISPATCH_ALL(dt, op, ...)                              \
  switch (dt) {                                                     \
    IDEM_DISPATCH_CASE(f32, float, __VA_ARGS__)                     \
    IDEM_DISPATCH_CASE(f64, double, __VA_ARGS__)                    \
    IDEM_DISPATCH_CASE(i32, int32_t, __VA_ARGS__)                   \
    IDEM_DISPATCH_CASE(i64, int64_t, __VA_ARGS__)                   \
    IDEM_DISPATCH_CASE(u8, uint8_t, __VA_ARGS__)                    \
    default: ::idem::fail(op, "unknown dtype");                     \
  }

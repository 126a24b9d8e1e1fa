// Force-included into every translation unit of the browser build (web/CMakeLists.txt). Debian's
// emscripten 3.1.6 ships an older libc++ that lacks a few C++20/C++17 library pieces the engine uses:
// std::bit_cast and floating-point std::to_chars / std::from_chars. They are supplied here from compiler
// builtins and the C library, with the standard's semantics for the forms the engine calls.
#pragma once

#include <version>

#ifdef __cplusplus
#include <bit>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>

namespace std {

#ifndef __cpp_lib_bit_cast
template <class To, class From>
constexpr To bit_cast(const From& from) noexcept {
  return __builtin_bit_cast(To, from);
}
#endif

#if !defined(__cpp_lib_to_chars)
// The shortest decimal digits that read back as the same double (what std::to_chars(first, last, d,
// chars_format::scientific) promises): the smallest printf precision that round-trips.
inline to_chars_result to_chars(char* first, char* last, double value, chars_format fmt) {
  char buf[64];
  int n = 0;
  for (int precision = 0; precision <= 17; ++precision) {
    n = fmt == chars_format::scientific ? std::snprintf(buf, sizeof buf, "%.*e", precision, value)
                                        : std::snprintf(buf, sizeof buf, "%.*g", precision + 1, value);
    if (std::strtod(buf, nullptr) == value) break;
  }
  if (n < 0 || n > last - first) return {last, errc::value_too_large};
  std::memcpy(first, buf, static_cast<size_t>(n));
  return {first + n, errc()};
}

// Decimal floating point as from_chars parses it: no leading whitespace or '+', no hex prefix.
inline from_chars_result from_chars(const char* first, const char* last, double& value,
                                    chars_format = chars_format::general) {
  if (first == last || *first == ' ' || *first == '\t' || *first == '\n' || *first == '+' ||
      (last - first > 1 && first[0] == '0' && (first[1] == 'x' || first[1] == 'X')))
    return {first, errc::invalid_argument};
  const string text(first, last);  // strtod needs a terminator
  char* end = nullptr;
  errno = 0;
  const double d = std::strtod(text.c_str(), &end);
  if (end == text.c_str()) return {first, errc::invalid_argument};
  const char* ptr = first + (end - text.c_str());
  if (errno == ERANGE) return {ptr, errc::result_out_of_range};
  value = d;
  return {ptr, errc()};
}
#endif

}  // namespace std
#endif

// A tiny test harness for the native tests: each *_test.cpp is one ctest
// executable. REX_TEST registers a case; CHECK* record failures and go on;
// main() runs every case and exits non-zero when any check failed.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace rex_test {

struct Case {
  const char* name;
  std::function<void()> body;
};

inline std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}
inline int& failures() {
  static int count = 0;
  return count;
}
struct Registrar {
  Registrar(const char* name, std::function<void()> body) { registry().push_back({name, std::move(body)}); }
};

inline void fail(const char* file, int line, const std::string& what) {
  ++failures();
  std::fprintf(stderr, "  FAILED %s:%d: %s\n", file, line, what.c_str());
}

template <typename A, typename B>
std::string describe(const char* a_text, const char* b_text, const A& a, const B& b) {
  std::ostringstream out;
  out << a_text << " == " << b_text << " (" << a << " vs " << b << ")";
  return out.str();
}

}  // namespace rex_test

#define REX_TEST_CONCAT2(a, b) a##b
#define REX_TEST_CONCAT(a, b) REX_TEST_CONCAT2(a, b)
#define REX_TEST(name)                                                                     \
  static void name();                                                                      \
  static ::rex_test::Registrar REX_TEST_CONCAT(rex_registrar_, name)(#name, name);         \
  static void name()

#define CHECK(cond) \
  do { if (!(cond)) ::rex_test::fail(__FILE__, __LINE__, #cond); } while (0)
#define CHECK_EQ(a, b) \
  do { if (!((a) == (b))) ::rex_test::fail(__FILE__, __LINE__, ::rex_test::describe(#a, #b, (a), (b))); } while (0)
#define CHECK_NEAR(a, b, tol)                                                               \
  do {                                                                                      \
    double rex_a_ = (a), rex_b_ = (b);                                                      \
    if (!(std::fabs(rex_a_ - rex_b_) <= (tol)))                                             \
      ::rex_test::fail(__FILE__, __LINE__, ::rex_test::describe(#a, #b, rex_a_, rex_b_));   \
  } while (0)
// The message of a failed Status/Result must contain `needle`.
#define CHECK_CONTAINS(haystack, needle)                                                    \
  do {                                                                                      \
    std::string rex_h_ = (haystack);                                                        \
    if (rex_h_.find(needle) == std::string::npos)                                           \
      ::rex_test::fail(__FILE__, __LINE__, std::string("\"") + rex_h_ + "\" lacks \"" + (needle) + "\""); \
  } while (0)

// REX_TEST_ONLY=substring runs only the cases whose name contains it (A/B timing runs).
int main() {
  int failed_cases = 0;
  const char* only = std::getenv("REX_TEST_ONLY");
  size_t ran = 0;
  for (auto& c : ::rex_test::registry()) {
    if (only && std::string(c.name).find(only) == std::string::npos) continue;
    ++ran;
    int before = ::rex_test::failures();
    c.body();
    bool ok = ::rex_test::failures() == before;
    if (!ok) ++failed_cases;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", c.name);
  }
  std::printf("%zu passed, %d failed\n", ran - size_t(failed_cases), failed_cases);
  return failed_cases == 0 ? 0 : 1;
}

// Reads native/tests/data/resize_golden.txt (written by make_resize_golden.py):
// one case per line, its first word naming the kind ("smart", "resize",
// "preprocess", "synthetic"). Tests run from the repository root.
#pragma once

#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "test_harness.h"

namespace rex_test {

// Calls `each(fields, line)` for every line of `kind`, with `fields` positioned
// after the kind. Returns how many lines there were; a missing file fails.
inline int for_each_resize_golden(const std::string& kind,
                                  const std::function<void(std::istringstream& fields, const std::string& line)>& each) {
  std::ifstream in("native/tests/data/resize_golden.txt");
  if (!in.good()) {
    fail(__FILE__, __LINE__, "cannot read native/tests/data/resize_golden.txt (run from the repository root)");
    return 0;
  }
  std::string line;
  int count = 0;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string first;
    fields >> first;
    if (first != kind) continue;
    ++count;
    each(fields, line);
  }
  return count;
}

}  // namespace rex_test

// libFuzzer target: the JSON parser and writer (io/json.h, json::parse / json::dump).
// Entry point and invariants: tests/fuzz/fuzz_entry.h. Built by -DIDEM_FUZZ=ON with clang; run by
// tools/test.sh, seeded from tests/fuzz/corpus/json/.
#include "tests/fuzz/fuzz_entry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    idem::fuzz::json_text(data, size);
  } catch (const idem::Error&) {
    // A rejected input with a message: the expected outcome for hostile bytes.
  }
  return 0;
}

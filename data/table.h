// Delimited numeric tables (CSV, TSV, whitespace-separated .dat/.txt): one row per line.
//
// Rules, in order:
//  - lines end in \n or \r\n; a UTF-8 byte-order mark at the start is ignored;
//  - blank lines and lines whose first non-blank character is '#' are skipped;
//  - the delimiter is chosen from the first remaining line: ',' if it contains a comma, else ';'
//    if it contains a semicolon, else runs of spaces/tabs. With ',' or ';' every cell is trimmed
//    of spaces/tabs and may be wrapped in double quotes; an empty cell is an error;
//  - that first line is a header when any of its cells is not a number, otherwise it is data;
//  - numbers are parsed with std::from_chars (decimal or scientific, optional leading '+');
//    NaN and Inf cells are rejected (say what is missing another way, e.g. drop the row);
//  - every data row (and the header) must have as many cells as the first row.
// Errors are idem::Error "[table] <name>: line L, column C: <what>" with 1-based line and column
// numbers (lines of the file, counting skipped ones), quoting the offending cell.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace idem::data {

struct Table {
  std::vector<std::string> header;  // empty when the file has no header line
  int64_t rows = 0, cols = 0;
  std::vector<double> values;  // rows x cols, row-major
};

// ensures: rows >= 1, cols >= 1, values.size() == rows * cols, all values finite.
Table parse_table(std::string_view text, const std::string& name);
// Reads the whole file (at most kTableMaxBytes) and parses it; errors name the path.
Table read_table(const std::string& path);

constexpr uint64_t kTableMaxBytes = uint64_t{1} << 31;

}  // namespace idem::data

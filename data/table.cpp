// Numeric table parsing. Rules and error contract: data/table.h.
#include "data/table.h"

#include <charconv>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "io/file.h"  // InputFile

namespace idem::data {

namespace {

enum class Delim { comma, semicolon, whitespace };

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

// Cells of one line; `cells` is reused between lines to avoid allocations.
void split(std::string_view line, Delim delim, std::vector<std::string_view>& cells) {
  cells.clear();
  if (delim == Delim::whitespace) {
    size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && is_blank(line[i])) ++i;
      const size_t start = i;
      while (i < line.size() && !is_blank(line[i])) ++i;
      if (i > start) cells.push_back(line.substr(start, i - start));
    }
    return;
  }
  const char d = delim == Delim::comma ? ',' : ';';
  size_t start = 0;
  while (true) {
    const size_t end = line.find(d, start);
    std::string_view cell =
        trim(line.substr(start, end == std::string_view::npos ? end : end - start));
    if (cell.size() >= 2 && cell.front() == '"' && cell.back() == '"')
      cell = trim(cell.substr(1, cell.size() - 2));
    cells.push_back(cell);
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
}

enum class Parse { ok, not_a_number, not_finite, out_of_range };

Parse parse_number(std::string_view s, double& out) {
  if (!s.empty() && s.front() == '+') {
    s.remove_prefix(1);
    if (!s.empty() && (s.front() == '+' || s.front() == '-')) return Parse::not_a_number;
  }
  if (s.empty()) return Parse::not_a_number;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (ec == std::errc::result_out_of_range) return Parse::out_of_range;
  if (ec != std::errc() || ptr != s.data() + s.size()) return Parse::not_a_number;
  if (!std::isfinite(out)) return Parse::not_finite;
  return Parse::ok;
}

std::string quote(std::string_view s) {
  constexpr size_t kMax = 40;  // keep messages short for garbage lines
  std::string q = "'" + std::string(s.substr(0, kMax)) + (s.size() > kMax ? "...'" : "'");
  return q;
}

const char* delim_name(Delim d) {
  switch (d) {
    case Delim::comma:
      return "commas";
    case Delim::semicolon:
      return "semicolons";
    case Delim::whitespace:
      return "spaces/tabs";
  }
  return "?";
}

}  // namespace

Table parse_table(std::string_view text, const std::string& name) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  Table t;
  Delim delim = Delim::whitespace;
  bool first = true;
  int64_t first_line = 0;  // the line that fixed the column count
  std::vector<std::string_view> cells;
  int64_t line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::string_view content = trim(line);
    if (content.empty() || content.front() == '#') continue;

    if (first) {
      delim = content.find(',') != std::string_view::npos   ? Delim::comma
              : content.find(';') != std::string_view::npos ? Delim::semicolon
                                                            : Delim::whitespace;
    }
    split(content, delim, cells);
    const int64_t ncells = static_cast<int64_t>(cells.size());
    if (first) {
      first = false;
      first_line = line_no;
      t.cols = ncells;
      // A header has a cell that is text; empty cells decide nothing (they fail below as data).
      bool numeric = true;
      double v;
      for (std::string_view c : cells)
        numeric = numeric && (c.empty() || parse_number(c, v) != Parse::not_a_number);
      if (!numeric) {
        for (std::string_view c : cells) t.header.emplace_back(c);
        continue;
      }
    } else if (ncells != t.cols) {
      fail("table", name, ": line ", line_no, ": ", ncells, " cells, expected ", t.cols,
           " as in line ", first_line, " (cells separated by ", delim_name(delim), ")");
    }
    for (int64_t c = 0; c < ncells; ++c) {
      double v = 0;
      switch (parse_number(cells[c], v)) {
        case Parse::ok:
          break;
        case Parse::not_a_number:
          if (cells[c].empty())
            fail("table", name, ": line ", line_no, ", column ", c + 1, ": empty cell");
          fail("table", name, ": line ", line_no, ", column ", c + 1, ": non-numeric cell ",
               quote(cells[c]));
        case Parse::not_finite:
          fail("table", name, ": line ", line_no, ", column ", c + 1, ": ", quote(cells[c]),
               " is NaN or Inf; tables must hold finite numbers (drop or impute missing values)");
        case Parse::out_of_range:
          fail("table", name, ": line ", line_no, ", column ", c + 1, ": ", quote(cells[c]),
               " is out of the range of a double");
      }
      t.values.push_back(v);
    }
    ++t.rows;
  }
  if (t.rows == 0)
    fail("table", name, ": no data rows",
         t.header.empty() ? " (empty file?)" : " after the header");
  return t;
}

Table read_table(const std::string& path) {
  InputFile f(path, "table");
  if (f.size() > kTableMaxBytes)
    fail("table", path, ": file is ", f.size(), " bytes, over the ", kTableMaxBytes, "-byte limit");
  std::string text(static_cast<size_t>(f.size()), '\0');
  f.read_exact(text.data(), text.size(), "the file");
  return parse_table(text, path);
}

}  // namespace idem::data

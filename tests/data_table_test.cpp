// Delimited numeric tables: delimiters, headers, comments, CRLF, and errors that name the line,
// the column and the cell.
#include <gtest/gtest.h>

#include "data/table.h"
#include "tests/test_util.h"

namespace idem::data {
namespace {

using testing::expect_error;

void expect_table_error(const std::string& text, const std::string& part) {
  expect_error([&] { parse_table(text, "t.csv"); }, "table", part, "t.csv");
}

TEST(DataTable, WhitespaceSeparated) {
  const Table t = parse_table("1 2   3\n4\t5 \t 6\n", "t.dat");
  EXPECT_TRUE(t.header.empty());
  EXPECT_EQ(t.rows, 2);
  EXPECT_EQ(t.cols, 3);
  EXPECT_EQ(t.values, (std::vector<double>{1, 2, 3, 4, 5, 6}));
}

TEST(DataTable, CommaSeparatedWithHeader) {
  const Table t = parse_table("x1, x2 ,\"y\"\n-1.5, +2e3, .25\n3,4,5", "t.csv");
  EXPECT_EQ(t.header, (std::vector<std::string>{"x1", "x2", "y"}));
  EXPECT_EQ(t.rows, 2);
  EXPECT_EQ(t.cols, 3);
  EXPECT_EQ(t.values, (std::vector<double>{-1.5, 2000, 0.25, 3, 4, 5}));
}

TEST(DataTable, SemicolonsTabsCommentsBlankLinesCrlfAndBom) {
  const Table semi = parse_table("a;b\r\n1;2\r\n\r\n3;4\r\n", "t.csv");
  EXPECT_EQ(semi.header, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(semi.values, (std::vector<double>{1, 2, 3, 4}));

  const Table tabs = parse_table(
      "\xEF\xBB\xBF# a comment\n\n   # indented comment\n1\t2\r\n\t\n3\t4\n# end\n", "t.tsv");
  EXPECT_TRUE(tabs.header.empty());
  EXPECT_EQ(tabs.rows, 2);
  EXPECT_EQ(tabs.values, (std::vector<double>{1, 2, 3, 4}));

  const Table one = parse_table("42", "t");  // no newline at all
  EXPECT_EQ(one.rows, 1);
  EXPECT_EQ(one.cols, 1);
  EXPECT_EQ(one.values, (std::vector<double>{42}));
}

TEST(DataTable, ReadsFiles) {
  testing::TempDir dir("idem_table_test");
  const std::string path = dir.file("friedman.csv");
  testing::write_bytes(path, "a,b,target\n0.5,1,2\n");
  const Table t = read_table(path);
  EXPECT_EQ(t.header.size(), 3u);
  EXPECT_EQ(t.values, (std::vector<double>{0.5, 1, 2}));
  expect_error([&] { read_table(dir.file("missing.csv")); }, "table", "cannot open",
               dir.file("missing.csv"));
}

TEST(DataTable, Errors) {
  // A ragged row names its line (counting comments and blank lines) and the expected count.
  expect_table_error("a,b,c\n1,2,3\n# note\n\n4,5\n", "line 5: 2 cells, expected 3 as in line 1");
  expect_table_error("1 2 3\n4 5 6 7\n", "line 2: 4 cells, expected 3 as in line 1");
  // Non-numeric cells name line and column and quote the cell.
  expect_table_error("x,y\n1,2\n3,abc\n", "line 3, column 2: non-numeric cell 'abc'");
  expect_table_error("1 2\n3 4x\n", "line 2, column 2: non-numeric cell '4x'");
  expect_table_error("1,2\n3,1e999\n", "line 2, column 2: '1e999' is out of the range");
  expect_table_error("1,,2\n", "line 1, column 2: empty cell");
  expect_table_error("1,2\n3,+-4\n", "non-numeric cell '+-4'");
  // NaN and Inf are rejected with a clear message.
  expect_table_error("1,2\nnan,3\n", "line 2, column 1: 'nan' is NaN or Inf");
  expect_table_error("1 2\n3 -inf\n", "line 2, column 2: '-inf' is NaN or Inf");
  // Empty inputs.
  expect_table_error("", "no data rows (empty file?)");
  expect_table_error("\n# only a comment\r\n  \n", "no data rows (empty file?)");
  expect_table_error("a,b,c\n", "no data rows after the header");
  // Long garbage cells are shortened in the message.
  expect_table_error("1\n" + std::string(200, 'z') + "\n",
                     "'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz...'");
}

}  // namespace
}  // namespace idem::data

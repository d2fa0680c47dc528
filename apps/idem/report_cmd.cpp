// `idem report`: the report files of a run (results.md, metric.svg, cost.svg, pareto.svg,
// pareto.csv) rendered again from a results.csv alone, without the model or the data. For
// re-rendering after the report code changed, or for a CSV kept elsewhere (docs/results/csv/).
#include <filesystem>
#include <iostream>

#include "apps/idem/cli.h"
#include "apps/idem/report.h"
#include "apps/idem/tasks.h"
#include "core/error.h"
#include "io/json.h"

namespace fs = std::filesystem;

namespace idem::cli {

int cmd_report(int argc, char** argv) {
  Args a("report",
         {{"results", true, "", "a results.csv, or a run directory that holds one (required)"},
          {"out", true, "", "directory for the files (created; default: the CSV's own directory)"},
          {"task", true, "", std::string(kTaskNames) + ": names the metric (default: the run's config.json)"},
          {"title", true, "", "title of the tables and plots (default: the task and the CSV's name)"}},
         argc, argv, 2);
  if (a.help()) {
    std::cout << "idem report: render results.md, metric.svg, cost.svg, pareto.svg and pareto.csv again\n"
                 "from a results.csv (long form, one line per seed × shift × method).\n\n"
              << a.usage();
    return 0;
  }
  std::string csv = a.str("results");
  IDEM_CHECK(!csv.empty(), "idem report", "--results is required (a results.csv or a run directory)");
  if (fs::is_directory(csv)) csv = (fs::path(csv) / "results.csv").string();
  IDEM_CHECK(fs::is_regular_file(csv), "idem report", "cannot read results file ", csv);
  const std::vector<ResultRow> rows = parse_results_csv(read_text(csv));
  IDEM_CHECK(!rows.empty(), "idem report", csv, " has no result rows");

  const fs::path dir = fs::path(csv).parent_path().empty() ? fs::path(".") : fs::path(csv).parent_path();
  std::string task = a.str("task");
  if (task.empty()) {
    const fs::path config = dir / "config.json";
    IDEM_CHECK(fs::exists(config), "idem report", "no --task given and no config.json next to ", csv,
               " to read it from (pass --task ", kTaskNames, ")");
    task = json::parse(read_text(config.string())).at("task").at("task").as_string();
  }
  const std::string metric = task_metric_name(task);
  const std::string title = a.str("title").empty() ? task + " (" + fs::path(csv).filename().string() + ")"
                                                   : a.str("title");
  const std::string out = a.str("out").empty() ? dir.string() : a.str("out");
  std::error_code ec;
  fs::create_directories(out, ec);
  IDEM_CHECK(!ec, "idem report", "cannot create ", out, ": ", ec.message());
  std::cout << write_report_files(out, rows, metric, title) << "\nreport files in " << out << "\n";
  return 0;
}

}  // namespace idem::cli

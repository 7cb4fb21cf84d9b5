// A file input's saved position on a real file system: a restart resumes
// after it and skips the lines the queue took after it was saved; another
// file at the path starts over.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gatehouse/agent/input_file.h"
#include "test_support.h"

using gatehouse::agent::InputFile;
namespace fs = std::filesystem;

namespace {

std::string read_rest(int fd) {
  std::string text;
  char buffer[256];
  for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) text.append(buffer, static_cast<size_t>(n));
  return text;
}

}  // namespace

TEST_CASE("input file: resumes after its saved position, skipping what the queue took after it; another file starts over") {
  gatehouse::testing::TempDir dir("input-file-test");
  REQUIRE(!dir.path.empty());
  const std::string path = dir.path + "/input";
  std::ofstream(path) << "one\ntwo\nthree\nfour\nfive\n";
  std::string why;
  {
    auto file = InputFile::open(path, dir.path, 40, why);  // a first run: from the start
    REQUIRE_MESSAGE(file != nullptr, why);
    CHECK(file->lines_to_skip() == 0);
    CHECK(read_rest(file->fd()) == "one\ntwo\nthree\nfour\nfive\n");
    REQUIRE(file->save(8, 42, why));  // "one", "two" queued as seqs 41, 42
  }
  {
    // The queue took "three" and "four" (seqs 43, 44) before a crash; the position stayed at 42.
    auto file = InputFile::open(path, dir.path, 44, why);
    REQUIRE_MESSAGE(file != nullptr, why);
    CHECK(file->lines_to_skip() == 2);
    CHECK(read_rest(file->fd()) == "three\nfour\nfive\n");
  }
  fs::rename(path, path + ".1");  // rotated while the agent was down
  std::ofstream(path) << "new\n";
  auto file = InputFile::open(path, dir.path, 44, why);
  REQUIRE_MESSAGE(file != nullptr, why);
  CHECK(file->lines_to_skip() == 0);
  CHECK(read_rest(file->fd()) == "new\n");
}

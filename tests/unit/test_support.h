// Helpers shared by the test suites.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "gatehouse/runtime/runtime.h"

namespace gatehouse::testing {

// Posts `value` to shard `shard`'s service, which is its own Mailbox.
inline bool tell(runtime::Runtime& runtime, uint32_t shard, uint64_t value = 0) {
  auto* mailbox = dynamic_cast<runtime::Mailbox*>(&runtime.service(shard));
  return mailbox != nullptr && runtime.shard(shard).post({mailbox, value, nullptr});
}

// Polls `predicate` every 5 ms until it holds or `limit` passes.
template <class Predicate>
bool wait_until(Predicate predicate, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!predicate()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// A fresh folder under /tmp (mkdtemp's template), removed with everything in it.
struct TempDir {
  explicit TempDir(const std::string& name) {
    std::string pattern = "/tmp/gatehouse-" + name + "-XXXXXX";
    if (mkdtemp(pattern.data()) != nullptr) path = pattern;
  }
  ~TempDir() {
    if (!path.empty()) std::filesystem::remove_all(path);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string path;  // "" when mkdtemp failed
};

// Sends this process's stderr (the JSON event log) to a file while alive.
class StderrCapture {
 public:
  explicit StderrCapture(std::string path) : path_(std::move(path)), saved_(dup(STDERR_FILENO)) {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    dup2(fd, STDERR_FILENO);
    ::close(fd);
  }
  ~StderrCapture() {
    dup2(saved_, STDERR_FILENO);
    ::close(saved_);
  }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;

  std::string text() const {
    std::ifstream in(path_);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }

 private:
  std::string path_;
  int saved_;
};

}  // namespace gatehouse::testing

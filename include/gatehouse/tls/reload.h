// Certificate renewal without restarts: the TLS material in use is replaced
// whole, new handshakes take the new one, existing sessions keep theirs.
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gatehouse/tls/tls_types.h"

namespace gatehouse::tls {

class ReloadableContext {
 public:
  explicit ReloadableContext(ContextOptions options) : options_(std::move(options)) {}

  // Loads the files again. Success: new handshakes use them (event 20053,
  // subject and expiry). Failure: the material in use stays (event 20051,
  // why). Returns "" or why.
  std::string reload();
  // What a new handshake should use; nullptr before the first good load.
  std::shared_ptr<const Context> current() const { return current_.load(); }
  // Moves at every good load: listeners re-check live sessions against the new CRL.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  // Unix seconds: our certificate's notAfter, the CRL's earliest nextUpdate
  // (0: none loaded, no CRL). For the admin endpoint.
  time_t certificate_expires_at() const;
  time_t crl_next_update() const;
  // The files whose change should trigger reload().
  std::vector<std::string> paths() const;
  // Event 30052, once a day from 7 days before the CRL's nextUpdate (and
  // after it). Called at each load and by the process's hourly tick.
  void warn_if_crl_expiring();

 private:
  const ContextOptions options_;
  std::atomic<std::shared_ptr<const Context>> current_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<time_t> crl_warned_at_{0};  // reload() runs on the file watcher and the signal waiter
};

// Watches files through their folders (so editors' and cert tools' atomic
// replace-by-rename counts) and calls on_change on its own thread once the
// files have been quiet for debounce_ms: a certificate and its key written one
// after the other cause one reload, not a failed one in between.
class FileWatcher {
 public:
  FileWatcher(const std::vector<std::string>& paths, uint32_t debounce_ms, std::function<void()> on_change);
  ~FileWatcher();
  FileWatcher(const FileWatcher&) = delete;
  FileWatcher& operator=(const FileWatcher&) = delete;

  bool ok() const { return inotify_fd_ >= 0; }

 private:
  void run(uint32_t debounce_ms);

  struct Watch {
    int descriptor;
    std::vector<std::string> names;  // file names in that folder
  };
  std::vector<Watch> watches_;
  std::function<void()> on_change_;
  int inotify_fd_ = -1;
  int stop_fd_ = -1;
  std::thread thread_;
};

}  // namespace gatehouse::tls

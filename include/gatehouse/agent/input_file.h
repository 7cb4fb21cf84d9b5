// `--file F` and `--follow F`: lines from a file that a restart resumes
// where the last run stopped, exactly once. The position (file identity,
// byte offset after the last queued line, the queue's last seq then) is
// written durably to `input-position` in the queue folder after each batch
// is in the queue; a crash between the two leaves it behind, so the lines
// after it that the queue already holds (its last seq minus the saved one)
// are skipped, not queued twice. --follow follows appends, rotation by
// rename (the old file is read to its end first) and truncation, like
// `tail -F`. docs/agent.md.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

namespace gatehouse::agent {

class InputFile {
 public:
  // Opens `path` at its saved position; `queue_last_seq`: the queue's now.
  // nullptr with `why`.
  static std::unique_ptr<InputFile> open(const std::string& path, const std::string& queue_dir, uint64_t queue_last_seq,
                                         std::string& why);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  int fd() const { return fd_; }
  // Lines after the position that the queue already holds: skip them.
  uint64_t lines_to_skip() const { return lines_to_skip_; }
  // The lines through byte `offset` are in the queue, which holds through `last_seq`.
  bool save(uint64_t offset, uint64_t last_seq, std::string& why);
  // --follow, at the end of the file: true when reading goes on from the
  // start of a new file (renamed away, the path names another) or of this
  // one (truncated below `offset`); the position is saved there.
  bool moved_on(uint64_t offset, uint64_t last_seq);

 private:
  InputFile(std::string path, std::string position_path) : path_(std::move(path)), position_path_(std::move(position_path)) {}
  bool open_current(std::string& why);

  const std::string path_;
  const std::string position_path_;
  int fd_ = -1;
  dev_t device_ = 0;
  ino_t inode_ = 0;
  uint64_t lines_to_skip_ = 0;
};

}  // namespace gatehouse::agent

#include "gatehouse/agent/input_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "gatehouse/log/log.h"
#include "gatehouse/store/segment_log.h"

namespace gatehouse::agent {

std::unique_ptr<InputFile> InputFile::open(const std::string& path, const std::string& queue_dir,
                                           uint64_t queue_last_seq, std::string& why) {
  std::unique_ptr<InputFile> file(new InputFile(path, queue_dir + "/input-position"));
  if (!file->open_current(why)) return nullptr;
  // Saved: device inode offset last_seq path
  uint64_t device = 0;
  uint64_t inode = 0;
  uint64_t offset = 0;
  uint64_t saved_seq = 0;
  std::string saved_path;
  std::ifstream saved(file->position_path_);
  const bool resumable = saved >> device >> inode >> offset >> saved_seq && std::getline(saved >> std::ws, saved_path) &&
                         saved_path == path && device == file->device_ && inode == file->inode_;
  struct stat info {};
  fstat(file->fd_, &info);
  if (resumable && offset <= static_cast<uint64_t>(info.st_size) && saved_seq <= queue_last_seq) {
    if (lseek(file->fd_, static_cast<off_t>(offset), SEEK_SET) < 0) {
      why = "cannot seek in " + path + ": " + std::strerror(errno);
      return nullptr;
    }
    file->lines_to_skip_ = queue_last_seq - saved_seq;
    log::emit(log::Level::info, log::EventId::input_position,
              "input " + path + " resumes where the last run stopped",
              {{"offset", offset}, {"lines_already_queued", file->lines_to_skip_}});
    return file;
  }
  if (saved_path == path) {
    log::emit(log::Level::warning, log::EventId::input_position,
              "input " + path + " is another file than the last run read (replaced or truncated meanwhile): read from "
              "its start");
  }
  if (!file->save(0, queue_last_seq, why)) return nullptr;
  return file;
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

bool InputFile::open_current(std::string& why) {
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat info {};
  if (fd < 0 || fstat(fd, &info) != 0) {
    why = "cannot read " + path_ + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return false;
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  device_ = info.st_dev;
  inode_ = info.st_ino;
  return true;
}

bool InputFile::save(uint64_t offset, uint64_t last_seq, std::string& why) {
  return store::replace_file(position_path_,
                             std::to_string(device_) + " " + std::to_string(inode_) + " " + std::to_string(offset) + " " +
                                 std::to_string(last_seq) + " " + path_ + "\n",
                             why);
}

bool InputFile::moved_on(uint64_t offset, uint64_t last_seq) {
  struct stat now {};
  struct stat named {};
  std::string why;
  if (fstat(fd_, &now) == 0 && static_cast<uint64_t>(now.st_size) < offset) {
    log::emit(log::Level::warning, log::EventId::input_position,
              "input " + path_ + " was truncated below what was read: read from its start",
              {{"offset", offset}, {"size_bytes", static_cast<uint64_t>(now.st_size)}});
    lseek(fd_, 0, SEEK_SET);
  } else if (::stat(path_.c_str(), &named) == 0 && (named.st_ino != inode_ || named.st_dev != device_)) {
    if (!open_current(why)) return false;  // looked again at the next end of file
    log::emit(log::Level::info, log::EventId::input_position, "input " + path_ + " was rotated: the new file from its start");
  } else {
    return false;
  }
  lines_to_skip_ = 0;
  if (!save(0, last_seq, why)) log::emit(log::Level::warning, log::EventId::queue_write_failed, why);
  return true;
}

}  // namespace gatehouse::agent

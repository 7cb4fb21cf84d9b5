// One io_uring per shard, and its provided-buffer ring.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace gatehouse::runtime {

// Raises the soft RLIMIT_MEMLOCK and RLIMIT_NOFILE to their hard limits
// (once per process): rings are charged to the first, direct-descriptor
// tables are bounded by the second.
void raise_process_limits();

class Ring {
 public:
  Ring() = default;
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // Sets up the ring on the calling thread (SINGLE_ISSUER: only it may submit)
  // with a sparse direct-descriptor table of files_max slots. On failure says
  // which environment limit stopped it and how to lift it.
  bool init(uint32_t sq_entries, uint32_t cq_entries, uint32_t files_max, std::string& why);

  io_uring* get() { return &ring_; }
  // An SQE; when the SQ is full, submits what is queued to make room.
  io_uring_sqe* sqe();
  const char* mode() const { return mode_; }  // which setup flags the kernel took

 private:
  io_uring ring_{};
  bool initialized_ = false;
  const char* mode_ = "";
};

// Receive buffers the kernel picks from (IORING_OP_RECV with a buffer group).
// liburing 2.3 has no io_uring_setup_buf_ring: mmap + register by hand.
class BufferRing {
 public:
  BufferRing() = default;
  ~BufferRing();
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  bool init(io_uring* ring, uint16_t group_id, uint32_t count, uint32_t size_bytes, std::string& why);

  std::byte* buffer(uint16_t id) { return buffers_ + size_t{id} * size_bytes_; }
  // Returns a consumed buffer to the kernel; visible after publish().
  void give_back(uint16_t id);
  void publish();
  uint16_t group_id() const { return group_id_; }

 private:
  io_uring* ring_ = nullptr;
  io_uring_buf_ring* entries_ = nullptr;
  std::byte* buffers_ = nullptr;
  size_t mapped_bytes_ = 0;
  uint32_t count_ = 0;
  uint32_t size_bytes_ = 0;
  uint16_t group_id_ = 0;
  int pending_ = 0;  // given back, not yet published
};

}  // namespace gatehouse::runtime

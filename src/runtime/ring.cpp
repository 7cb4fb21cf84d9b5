#include "runtime/ring.h"

#include <sys/mman.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>

#include "gatehouse/log/invariant.h"
#include "gatehouse/runtime/runtime.h"

namespace gatehouse::runtime {
namespace {

std::string limit_text(int resource) {
  rlimit limit{};
  getrlimit(resource, &limit);
  auto text = [](rlim_t value) { return value == RLIM_INFINITY ? std::string("unlimited") : std::to_string(value); };
  return text(limit.rlim_cur) + " (hard " + text(limit.rlim_max) + ")";
}

std::string io_uring_disabled_sysctl() {
  std::ifstream in("/proc/sys/kernel/io_uring_disabled");
  std::string value;
  return in >> value ? value : "absent";
}

std::string setup_failure(int error) {
  switch (error) {
    case EPERM:
    case EACCES:
      return "io_uring is not permitted here (io_uring_setup: " + std::string(std::strerror(error)) +
             "; kernel.io_uring_disabled = " + io_uring_disabled_sysctl() +
             "). Fix: sysctl -w kernel.io_uring_disabled=0 (or add the user to kernel.io_uring_group), "
             "or allow io_uring_setup/io_uring_enter/io_uring_register in the container's seccomp profile";
    case ENOSYS:
      return "this kernel has no io_uring (io_uring_setup: ENOSYS); gatehouse needs Linux 6.0 or newer";
    case ENOMEM:
      return "not enough locked memory for the ring (io_uring_setup: ENOMEM; RLIMIT_MEMLOCK = " +
             limit_text(RLIMIT_MEMLOCK) +
             " bytes). Fix: raise it (ulimit -l, systemd LimitMEMLOCK=infinity) or grant CAP_IPC_LOCK";
    default:
      return "io_uring_setup failed: " + std::string(std::strerror(error));
  }
}

}  // namespace

void raise_process_limits() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (int resource : {RLIMIT_MEMLOCK, RLIMIT_NOFILE}) {
      rlimit limit{};
      if (getrlimit(resource, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(resource, &limit);
      }
    }
  });
}

Ring::~Ring() {
  if (initialized_) io_uring_queue_exit(&ring_);
}

bool Ring::init(uint32_t sq_entries, uint32_t cq_entries, uint32_t files_max, std::string& why) {
  raise_process_limits();
  // Newest first; older kernels refuse unknown flags with EINVAL.
  struct Attempt {
    unsigned flags;
    const char* mode;
  };
  constexpr unsigned kBase = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
  const Attempt attempts[] = {
      {kBase | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "single_issuer+defer_taskrun"},
      {kBase | IORING_SETUP_COOP_TASKRUN, "coop_taskrun"},
      {kBase, "plain"},
  };
  int error = 0;
  for (const Attempt& attempt : attempts) {
    io_uring_params params{};
    params.flags = attempt.flags;
    params.cq_entries = cq_entries;
    error = -io_uring_queue_init_params(sq_entries, &ring_, &params);
    if (error == 0) {
      mode_ = attempt.mode;
      break;
    }
    if (error != EINVAL) break;
  }
  if (error != 0) {
    why = setup_failure(error);
    if (error == ENOSYS || error == EPERM || error == EACCES) note_start_failure(StartFailure::io_uring_unavailable);
    return false;
  }
  initialized_ = true;
  io_uring_register_ring_fd(&ring_);  // saves an fd lookup per enter; optional
  if (const int rc = io_uring_register_files_sparse(&ring_, files_max); rc < 0) {
    why = "cannot register a table of " + std::to_string(files_max) + " direct descriptors (" +
          std::strerror(-rc) + "; RLIMIT_NOFILE = " + limit_text(RLIMIT_NOFILE) +
          "): lower [runtime] connections_per_shard or raise the hard RLIMIT_NOFILE";
    return false;
  }
  return true;
}

io_uring_sqe* Ring::sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

BufferRing::~BufferRing() {
  if (entries_ != nullptr) io_uring_unregister_buf_ring(ring_, group_id_);
  if (mapped_bytes_ != 0) munmap(entries_, mapped_bytes_);
}

bool BufferRing::init(io_uring* ring, uint16_t group_id, uint32_t count, uint32_t size_bytes, std::string& why) {
  GH_INVARIANT(count > 0 && count <= 32'768 && (count & (count - 1)) == 0);
  ring_ = ring;
  count_ = count;
  size_bytes_ = size_bytes;
  group_id_ = group_id;
  // One mapping: the ring entries (page aligned, as the kernel requires) then the buffers.
  const size_t entries_bytes = (count * sizeof(io_uring_buf) + 4095) & ~size_t{4095};
  mapped_bytes_ = entries_bytes + size_t{count} * size_bytes;
  void* memory = mmap(nullptr, mapped_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) {
    mapped_bytes_ = 0;
    why = "cannot map " + std::to_string(count) + " receive buffers: " + std::strerror(errno);
    return false;
  }
  auto* entries = static_cast<io_uring_buf_ring*>(memory);
  buffers_ = static_cast<std::byte*>(memory) + entries_bytes;
  io_uring_buf_reg registration{};
  registration.ring_addr = reinterpret_cast<uint64_t>(entries);
  registration.ring_entries = count;
  registration.bgid = group_id;
  if (const int rc = io_uring_register_buf_ring(ring, &registration, 0); rc < 0) {
    why = "cannot register the receive buffer ring (" + std::string(std::strerror(-rc)) +
          (rc == -ENOMEM ? "; RLIMIT_MEMLOCK = " + limit_text(RLIMIT_MEMLOCK) +
                               ": raise it or grant CAP_IPC_LOCK"
                         : std::string(rc == -EINVAL ? "; needs Linux 5.19 or newer" : "")) +
          ")";
    munmap(memory, mapped_bytes_);
    mapped_bytes_ = 0;
    return false;
  }
  entries_ = entries;
  io_uring_buf_ring_init(entries_);
  for (uint32_t id = 0; id < count; ++id) give_back(static_cast<uint16_t>(id));
  publish();
  return true;
}

void BufferRing::give_back(uint16_t id) {
  io_uring_buf_ring_add(entries_, buffer(id), size_bytes_, id, io_uring_buf_ring_mask(count_), pending_);
  ++pending_;
}

void BufferRing::publish() {
  if (pending_ == 0) return;
  io_uring_buf_ring_advance(entries_, pending_);
  pending_ = 0;
}

}  // namespace gatehouse::runtime

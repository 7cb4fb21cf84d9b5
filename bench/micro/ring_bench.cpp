// The receive path's buffer recycling through the kernel: a multishot recv on
// one end of a socketpair picks a buffer from the shard's provided-buffer ring
// (runtime::BufferRing); the bench writes range(0) bytes into the other end,
// reaps the completions and gives each buffer back, as a shard does per
// receive. A ring of 64 buffers of 16 KiB.
#include <benchmark/benchmark.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "runtime/ring.h"

using namespace gatehouse::runtime;

namespace {

constexpr uint16_t kGroupId = 7;
constexpr uint32_t kBuffers = 64;
constexpr uint32_t kBufferBytes = 16 * 1024;

void arm_recv(Ring& ring, int fd) {
  io_uring_sqe* sqe = ring.sqe();
  io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = kGroupId;
}

void BM_buffer_ring_recv_recycle(benchmark::State& state) {
  const auto message_bytes = static_cast<size_t>(state.range(0));
  std::string why;
  Ring ring;
  BufferRing buffer_ring;
  int fds[2] = {-1, -1};
  if (!ring.init(64, 256, 16, why) || !buffer_ring.init(ring.get(), kGroupId, kBuffers, kBufferBytes, why) ||
      socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) {
    state.SkipWithError(why.empty() ? "socketpair failed" : why.c_str());
    return;
  }
  const std::vector<char> message(message_bytes, 'x');
  arm_recv(ring, fds[0]);
  uint64_t rearmed = 0;
  for (auto _ : state) {
    if (write(fds[1], message.data(), message.size()) != static_cast<ssize_t>(message.size())) {
      state.SkipWithError("write to the socketpair failed");
      break;
    }
    size_t received_bytes = 0;
    while (received_bytes < message_bytes) {
      io_uring_cqe* cqe = nullptr;
      io_uring_submit_and_wait(ring.get(), 1);
      if (io_uring_peek_cqe(ring.get(), &cqe) != 0) continue;
      const int result = cqe->res;
      const uint32_t flags = cqe->flags;
      io_uring_cqe_seen(ring.get(), cqe);
      if (result > 0 && (flags & IORING_CQE_F_BUFFER) != 0) {
        received_bytes += static_cast<size_t>(result);
        buffer_ring.give_back(static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT));
        buffer_ring.publish();
      }
      if ((flags & IORING_CQE_F_MORE) == 0) {  // ran dry or ended: re-arm, as a shard does
        arm_recv(ring, fds[0]);
        ++rearmed;
      }
    }
  }
  state.counters["rearmed"] = static_cast<double>(rearmed);
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(message_bytes));
  close(fds[0]);
  close(fds[1]);
}

}  // namespace

BENCHMARK(BM_buffer_ring_recv_recycle)->ArgName("bytes")->Arg(256)->Arg(16384);

// Framed echo server for the runtime benchmark: decodes wire-protocol frames
// and sends every DATA frame back. Two engines doing the same work:
//   --engine uring  the gatehouse shard runtime (io_uring, direct descriptors)
//   --engine epoll  a plain edge-triggered epoll loop per thread, written for
//                   the comparison (SO_REUSEPORT listener per thread)
// SIGTERM/SIGINT stop it (drain, exit 0). Prints one JSON line of counters.
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "gatehouse/cli/args.h"
#include "gatehouse/log/log.h"
#include "gatehouse/net/tls_server.h"
#include "gatehouse/proto/codec.h"
#include "gatehouse/runtime/runtime.h"
#include "tls/session.h"

using namespace gatehouse;

namespace {

struct Options {
  std::string engine = "uring";
  std::string ip = "127.0.0.1";
  uint16_t port = 0;
  uint32_t shards = 1;
  uint32_t connections_per_shard = 16'384;
  uint32_t recv_buffer_size_bytes = runtime::RuntimeLimits{}.recv_buffer_size_bytes;
  uint32_t recv_buffers = runtime::RuntimeLimits{}.recv_buffers_per_shard;
  std::string tls_dir;        // uring engine behind TLS: DIR/ca.crt, DIR/gw1.example.test.{crt,key}
  uint32_t auth_threads = 1;
};

// Decodes `bytes` and appends each DATA frame, re-encoded, to `out`.
// Returns false on a protocol error.
template <class Append>
bool echo_frames(proto::FrameDecoder& decoder, std::span<const std::byte> bytes, uint64_t& frames, Append&& append) {
  std::byte frame_bytes[proto::kFrameMaxBytes];
  while (!bytes.empty()) {
    const proto::DecodeResult r = decoder.next(bytes);
    if (r.status == proto::DecodeStatus::error) return false;
    if (r.status != proto::DecodeStatus::frame) continue;
    const proto::EncodeResult e = proto::encode(r.frame, frame_bytes);
    append(std::span<const std::byte>(frame_bytes, e.size_bytes));
    ++frames;
  }
  return true;
}

std::atomic<uint64_t> g_frames{0};

class UringEcho final : public runtime::Service {
 public:
  explicit UringEcho(uint32_t connections_max) : pool_(64), decoders_(connections_max) {}
  ~UringEcho() override { g_frames += frames_; }

  void on_open(runtime::Shard&, runtime::ConnId id, uint64_t) override {
    decoders_[id.index] = std::make_unique<proto::FrameDecoder>(&pool_);
    open_.push_back(id);
  }
  void on_data(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> bytes) override {
    const bool ok = echo_frames(*decoders_[id.index], bytes, frames_, [&](std::span<const std::byte> frame) {
      if (!shard.send(id, frame)) shard.abort(id);  // the client keeps a bounded window
    });
    if (!ok) shard.abort(id);
  }
  void on_close(runtime::Shard&, runtime::ConnId id, int) override { decoders_[id.index].reset(); }
  void on_connect_failed(runtime::Shard&, uint64_t, int) override {}
  void on_stop(runtime::Shard& shard) override {
    for (runtime::ConnId id : open_) shard.close(id);
  }

 private:
  proto::SpillPool pool_;
  std::vector<std::unique_ptr<proto::FrameDecoder>> decoders_;
  std::vector<runtime::ConnId> open_;
  uint64_t frames_ = 0;
};

// Behind TLS the bytes are echoed as they come (they are frames, so the
// client's decoder sees the same stream either way).
class TlsEcho final : public net::PlainHandler {
 public:
  void on_established(net::TlsServer&, runtime::Shard&, net::Conn&, const tls::PeerIdentity&) override {}
  void on_plaintext(net::TlsServer& tls, runtime::Shard& shard, net::Conn& conn,
                    std::span<const std::byte> bytes) override {
    if (!tls.send(shard, conn, bytes)) shard.abort(conn.id);
  }
  void on_closed(net::TlsServer&, runtime::Shard&, net::Conn&) override {}
};

int run_uring(const Options& options) {
  runtime::RuntimeLimits limits;
  limits.shards = options.shards;
  limits.connections_per_shard = options.connections_per_shard;
  // The client keeps at most depth x size bytes in flight per connection; the
  // queue must hold one window (the epoll engine's buffer is unbounded).
  limits.send_queue_max_bytes = 1u << 20;
  limits.recv_buffer_size_bytes = options.recv_buffer_size_bytes;
  limits.recv_buffers_per_shard = options.recv_buffers;
  auto owned = std::make_unique<runtime::Runtime>(limits);  // reset below: services count on destruction
  runtime::Runtime& rt = *owned;
  runtime::PeerAddress address;
  std::string why;
  uint16_t port = 0;
  if (!runtime::make_address(options.ip, options.port, address, why) || !rt.listen(address, 0, port, why)) {
    std::fprintf(stderr, "echo_server: %s\n", why.c_str());
    return 1;
  }
  runtime::block_stop_signals();
  std::unique_ptr<tls::ReloadableContext> tls_context;
  std::unique_ptr<runtime::WorkerPool> auth_pool;
  TlsEcho tls_echo;
  if (!options.tls_dir.empty()) {
    const std::string& d = options.tls_dir;
    tls_context = std::make_unique<tls::ReloadableContext>(tls::Context::Options{
        tls::Side::server, d + "/gw1.example.test.crt", d + "/gw1.example.test.key", d + "/ca.crt", ""});
    if (std::string failure = tls_context->reload(); !failure.empty()) return 1;
    auth_pool = std::make_unique<runtime::WorkerPool>(options.auth_threads, 4'096);
  }
  const config::LiveSettings settings{config::Config{}};  // the default handshake deadline
  auto factory = [&](uint32_t) -> std::unique_ptr<runtime::Service> {
    if (tls_context) {
      return std::make_unique<net::TlsServer>(*tls_context, *auth_pool, tls_echo, options.connections_per_shard,
                                              net::TlsServerLimits{settings});
    }
    return std::make_unique<UringEcho>(options.connections_per_shard);
  };
  if (!rt.start(factory, why)) {
    log::emit(log::Level::error, log::EventId::runtime_unavailable, why);
    return 1;
  }
  std::printf("{\"listening\":%u,\"engine\":\"uring\",\"ring\":\"%s\"}\n", port, rt.shard(0).ring_mode());
  std::fflush(stdout);
  runtime::sd_notify("READY=1");
  runtime::wait_for_stop_signal([&] {
    if (tls_context) tls_context->reload();  // SIGHUP: take renewed certificates
  });
  runtime::sd_notify("STOPPING=1");
  rt.stop();
  rt.join();
  std::string counters;
  for (uint8_t stat = 0; stat < static_cast<uint8_t>(runtime::Stat::count); ++stat) {
    counters += ",\"" + std::string(runtime::to_string(static_cast<runtime::Stat>(stat))) +
                "\":" + std::to_string(rt.total(static_cast<runtime::Stat>(stat)));
  }
  owned.reset();
  std::printf("{\"engine\":\"uring\",\"frames\":%llu%s}\n", static_cast<unsigned long long>(g_frames.load()),
              counters.c_str());
  return 0;
}

// ---- the epoll baseline -----------------------------------------------------

struct EpollConnection {
  explicit EpollConnection(int f, proto::SpillPool* pool) : fd(f), decoder(pool) {}
  int fd;
  proto::FrameDecoder decoder;
  std::vector<std::byte> out;
  size_t out_sent = 0;
  bool want_write = false;
};

void epoll_thread(int listen_fd, std::atomic<bool>& stop, std::atomic<uint64_t>& frames_total) {
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event listen_event{EPOLLIN, {.ptr = nullptr}};
  epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &listen_event);
  proto::SpillPool pool(64);
  std::unordered_map<int, std::unique_ptr<EpollConnection>> connections;
  std::vector<std::byte> buffer(64 * 1024);
  uint64_t frames = 0;
  auto drop = [&](EpollConnection* c) {
    ::close(c->fd);
    connections.erase(c->fd);
  };
  auto flush = [&](EpollConnection* c) {
    while (c->out_sent < c->out.size()) {
      const ssize_t n = ::send(c->fd, c->out.data() + c->out_sent, c->out.size() - c->out_sent, MSG_NOSIGNAL);
      if (n < 0) return errno == EAGAIN;
      c->out_sent += static_cast<size_t>(n);
    }
    c->out.clear();
    c->out_sent = 0;
    return true;
  };
  epoll_event events[256];
  while (!stop.load(std::memory_order_relaxed)) {
    const int count = epoll_wait(ep, events, 256, 100);
    for (int i = 0; i < count; ++i) {
      auto* c = static_cast<EpollConnection*>(events[i].data.ptr);
      if (c == nullptr) {
        for (;;) {
          const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          auto connection = std::make_unique<EpollConnection>(fd, &pool);
          epoll_event event{EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP, {.ptr = connection.get()}};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &event);
          connections.emplace(fd, std::move(connection));
        }
        continue;
      }
      bool alive = true;
      if (events[i].events & EPOLLIN) {
        for (;;) {
          const ssize_t n = ::recv(c->fd, buffer.data(), buffer.size(), 0);
          if (n == 0 || (n < 0 && errno != EAGAIN)) {
            alive = false;
            break;
          }
          if (n < 0) break;
          if (!echo_frames(c->decoder, std::span(buffer).first(static_cast<size_t>(n)), frames,
                           [&](std::span<const std::byte> f) { c->out.insert(c->out.end(), f.begin(), f.end()); })) {
            alive = false;
            break;
          }
        }
      }
      if (alive && !c->out.empty()) alive = flush(c);
      if (!alive || (events[i].events & (EPOLLERR | EPOLLHUP))) drop(c);
    }
  }
  for (auto& [fd, c] : connections) ::close(fd);
  ::close(ep);
  frames_total += frames;
}

int run_epoll(const Options& options) {
  runtime::PeerAddress address;
  std::string why;
  if (!runtime::make_address(options.ip, options.port, address, why)) {
    std::fprintf(stderr, "echo_server: %s\n", why.c_str());
    return 1;
  }
  uint16_t port = options.port;
  std::vector<int> listeners;
  for (uint32_t i = 0; i < options.shards; ++i) {
    const int fd = ::socket(address.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto& v4 = reinterpret_cast<sockaddr_in&>(address.storage);
    v4.sin_port = htons(port);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address.storage), address.size_bytes) != 0 || ::listen(fd, SOMAXCONN) != 0) {
      std::fprintf(stderr, "echo_server: listen: %s\n", std::strerror(errno));
      return 1;
    }
    socklen_t size = address.size_bytes;
    getsockname(fd, reinterpret_cast<sockaddr*>(&address.storage), &size);
    port = ntohs(v4.sin_port);
    listeners.push_back(fd);
  }
  runtime::block_stop_signals();
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> frames{0};
  std::vector<std::thread> threads;
  for (int fd : listeners) threads.emplace_back(epoll_thread, fd, std::ref(stop), std::ref(frames));
  std::printf("{\"listening\":%u,\"engine\":\"epoll\"}\n", port);
  std::fflush(stdout);
  runtime::wait_for_stop_signal();
  stop = true;
  for (std::thread& t : threads) t.join();
  for (int fd : listeners) ::close(fd);
  std::printf("{\"engine\":\"epoll\",\"frames\":%llu}\n", static_cast<unsigned long long>(frames.load()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  static constexpr std::string_view kUsage =
      "echo_server [--engine uring|epoll] [--ip IP] [--port N] [--shards N] [--connections-per-shard N]\n"
      "                   [--recv-buffer-size BYTES] [--recv-buffers N] [--tls-dir DIR [--auth-threads N]]";
  static constexpr cli::FlagSpec kFlags[] = {
      {"--engine", true}, {"--ip", true}, {"--port", true}, {"--shards", true}, {"--connections-per-shard", true},
      {"--recv-buffer-size", true}, {"--recv-buffers", true}, {"--tls-dir", true}, {"--auth-threads", true}};
  cli::Args args;
  std::string why;
  if (!cli::parse_args(argc, argv, 1, kFlags, args, why) || !args.positionals.empty()) {
    return cli::usage_error("echo_server", why.empty() ? "unexpected argument" : why, kUsage);
  }
  Options options;
  auto number = [&](std::string_view flag, auto& out) {
    if (auto value = args.value(flag)) out = static_cast<std::remove_reference_t<decltype(out)>>(std::stoul(std::string(*value)));
  };
  options.engine = std::string(args.value("--engine").value_or(options.engine));
  options.ip = std::string(args.value("--ip").value_or(options.ip));
  options.tls_dir = std::string(args.value("--tls-dir").value_or(""));
  number("--port", options.port);
  number("--shards", options.shards);
  number("--connections-per-shard", options.connections_per_shard);
  number("--recv-buffer-size", options.recv_buffer_size_bytes);
  number("--recv-buffers", options.recv_buffers);
  number("--auth-threads", options.auth_threads);
  if (options.engine == "uring") return run_uring(options);
  if (options.engine == "epoll") return run_epoll(options);
  return cli::usage_error("echo_server", "--engine must be uring or epoll", kUsage);
}

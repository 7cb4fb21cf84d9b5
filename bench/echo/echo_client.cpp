// Load client for the echo benchmark (one client for both server engines):
// N connections, each keeping `depth` DATA frames of `size` bytes in flight.
// After a warm-up it measures echoed messages and, given --server-pid, the
// server process's CPU time over the same interval, and its own. On loopback
// the receiver's TCP work runs partly in the sender's syscalls, so server CPU
// alone shifts with batching; server + client CPU is the whole-system cost.
// Prints one JSON line.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gatehouse/cli/args.h"
#include "gatehouse/config/config.h"
#include "gatehouse/proto/codec.h"
#include "gatehouse/runtime/runtime.h"
#include "tls/session.h"

using namespace gatehouse;

namespace {

struct Options {
  std::string target;
  uint32_t connections = 100;
  uint32_t depth = 16;
  uint32_t size_bytes = 64;
  double warmup_s = 1;
  double duration_s = 5;
  uint32_t shards = 1;
  int server_pid = 0;
  std::string tls_dir;  // handshake mode: connect, TLS handshake, one echoed frame, close, again
  bool resume = false;  // handshake mode: resume from the previous session's ticket
};

std::atomic<uint64_t> g_messages{0};
std::atomic<uint64_t> g_errors{0};
std::atomic<uint64_t> g_open{0};
std::atomic<uint64_t> g_handshakes{0};  // TLS mode: sessions that completed handshake + echo
std::atomic<uint64_t> g_resumed{0};     // of those, resumed from a ticket
std::atomic<bool> g_running{true};

class Client final : public runtime::Service, public runtime::Mailbox {
 public:
  Client(const runtime::PeerAddress& target, const Options& options, std::shared_ptr<const tls::Context> tls)
      : target_(target), options_(options), tls_(std::move(tls)), pool_(64), decoders_(16'384), sessions_(16'384), established_(16'384),
        frame_(proto::kFrameMaxBytes) {
    const std::vector<std::byte> payload(options.size_bytes, std::byte{0x42});
    frame_.resize(proto::encode({0, proto::Data{1, proto::DataKind::event, payload}}, frame_).size_bytes);
  }
  // Start: open `connections` connections.
  void on_message(runtime::Shard& shard, uint64_t connections, void*) override {
    for (uint64_t i = 0; i < connections; ++i) {
      if (!shard.connect(target_, i)) g_errors.fetch_add(1);
    }
  }
  void on_open(runtime::Shard& shard, runtime::ConnId id, uint64_t) override {
    decoders_[id.index] = std::make_unique<proto::FrameDecoder>(&pool_);
    g_open.fetch_add(1);
    if (tls_) {
      sessions_[id.index] = std::make_unique<tls::Session>(tls_, "gw1.example.test");
      established_[id.index] = false;
      drive(shard, id);
      return;
    }
    for (uint32_t i = 0; i < options_.depth; ++i) shard.send(id, frame_);
  }
  void on_data(runtime::Shard& shard, runtime::ConnId id, std::span<const std::byte> bytes) override {
    if (tls_) {
      tls::Session& session = *sessions_[id.index];
      session.push_ciphertext(bytes);
      if (!established_[id.index]) drive(shard, id);  // also flushes the client's Finished
      if (!established_[id.index]) return;
      std::array<std::byte, 16 * 1024> plaintext{};
      int64_t n = 0;
      while ((n = session.read(plaintext)) > 0) {
        std::span<const std::byte> input(plaintext.data(), static_cast<size_t>(n));
        while (!input.empty()) {
          if (decoders_[id.index]->next(input).status == proto::DecodeStatus::frame) {
            g_handshakes.fetch_add(1, std::memory_order_relaxed);
            if (session.resumed()) g_resumed.fetch_add(1, std::memory_order_relaxed);
            shard.close(id);  // one echo per session: the next connect is the next handshake
          }
        }
      }
      return;
    }
    uint64_t echoed = 0;
    while (!bytes.empty()) {
      const proto::DecodeResult r = decoders_[id.index]->next(bytes);
      if (r.status == proto::DecodeStatus::error) {
        g_errors.fetch_add(1);
        shard.abort(id);
        return;
      }
      if (r.status == proto::DecodeStatus::frame) ++echoed;
    }
    for (uint64_t i = 0; i < echoed; ++i) shard.send(id, frame_);  // keep the window full
    g_messages.fetch_add(echoed, std::memory_order_relaxed);
  }
  void on_close(runtime::Shard& shard, runtime::ConnId id, int) override {
    decoders_[id.index].reset();
    sessions_[id.index].reset();
    if (tls_ && g_running.load()) shard.connect(target_, 0);  // keep `connections` handshakes going
  }
  void on_connect_failed(runtime::Shard&, uint64_t, int) override { g_errors.fetch_add(1); }

 private:
  // Client side of the handshake, inline on this shard.
  void drive(runtime::Shard& shard, runtime::ConnId id) {
    tls::Session& session = *sessions_[id.index];
    const tls::HandshakeState state = session.handshake();
    if (state == tls::HandshakeState::failed) {
      g_errors.fetch_add(1);
      shard.abort(id);
      return;
    }
    if (state == tls::HandshakeState::established && !established_[id.index]) {
      established_[id.index] = true;
      session.write(frame_);
    }
    std::array<std::byte, 16 * 1024> out{};
    while (size_t n = session.pull_ciphertext(out)) shard.send(id, std::span(out).first(n));
  }

  runtime::PeerAddress target_;
  Options options_;
  std::shared_ptr<const tls::Context> tls_;
  proto::SpillPool pool_;
  std::vector<std::unique_ptr<proto::FrameDecoder>> decoders_;
  std::vector<std::unique_ptr<tls::Session>> sessions_;
  std::vector<bool> established_;
  std::vector<std::byte> frame_;
};

// utime + stime of a process, in seconds.
double process_cpu_s(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields;
  std::string field;
  for (size_t i = close + 2; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == ' ') {
      fields.push_back(field);
      field.clear();
    } else {
      field.push_back(text[i]);
    }
  }
  // fields[0] is state (field 3); utime and stime are fields 14 and 15.
  return (std::stod(fields[11]) + std::stod(fields[12])) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace

int main(int argc, char** argv) {
  static constexpr std::string_view kUsage =
      "echo_client --target IP:PORT [--connections N] [--depth N] [--size BYTES] [--warmup S] [--duration S]\n"
      "                   [--shards N] [--server-pid PID] [--tls-dir DIR [--resume]]";
  static constexpr cli::FlagSpec kFlags[] = {
      {"--target", true}, {"--connections", true}, {"--depth", true}, {"--size", true}, {"--warmup", true},
      {"--duration", true}, {"--shards", true}, {"--server-pid", true}, {"--tls-dir", true}, {"--resume", false}};
  cli::Args args;
  std::string why;
  if (!cli::parse_args(argc, argv, 1, kFlags, args, why) || !args.positionals.empty() || !args.has("--target")) {
    return cli::usage_error("echo_client", why.empty() ? "--target IP:PORT is required" : why, kUsage);
  }
  Options options;
  auto text = [&](std::string_view flag) { return std::string(*args.value(flag)); };
  options.target = text("--target");
  if (args.has("--connections")) options.connections = static_cast<uint32_t>(std::stoul(text("--connections")));
  if (args.has("--depth")) options.depth = static_cast<uint32_t>(std::stoul(text("--depth")));
  if (args.has("--size")) options.size_bytes = static_cast<uint32_t>(std::stoul(text("--size")));
  if (args.has("--warmup")) options.warmup_s = std::stod(text("--warmup"));
  if (args.has("--duration")) options.duration_s = std::stod(text("--duration"));
  if (args.has("--shards")) options.shards = static_cast<uint32_t>(std::stoul(text("--shards")));
  if (args.has("--server-pid")) options.server_pid = std::stoi(text("--server-pid"));
  if (args.has("--tls-dir")) options.tls_dir = text("--tls-dir");
  options.resume = args.has("--resume");
  config::Endpoint endpoint;
  runtime::PeerAddress target;
  if (!config::parse_endpoint(options.target, true, endpoint, why) ||
      !runtime::make_address(endpoint.host, endpoint.port, target, why)) {
    std::fprintf(stderr, "echo_client: --target: %s\n", why.c_str());
    return 2;
  }
  runtime::RuntimeLimits limits;
  limits.shards = options.shards;
  limits.send_queue_max_bytes = 1u << 20;
  std::shared_ptr<const tls::Context> tls_context;
  if (!options.tls_dir.empty()) {
    const std::string& d = options.tls_dir;
    tls_context = tls::Context::load({.side = tls::Side::client, .cert_path = d + "/web01.example.test.crt",
                                      .key_path = d + "/web01.example.test.key", .ca_path = d + "/ca.crt",
                                      .resume_sessions = options.resume}, why);
    if (tls_context == nullptr) {
      std::fprintf(stderr, "echo_client: --tls-dir: %s\n", why.c_str());
      return 2;
    }
  }
  runtime::Runtime rt(limits);
  std::vector<Client*> clients;  // by shard
  if (!rt.start(
          [&](uint32_t) {
            auto client = std::make_unique<Client>(target, options, tls_context);
            clients.push_back(client.get());
            return client;
          },
          why)) {
    std::fprintf(stderr, "echo_client: %s\n", why.c_str());
    return 1;
  }
  for (uint32_t s = 0; s < rt.shard_count(); ++s) {
    const uint32_t share = options.connections / rt.shard_count() + (s < options.connections % rt.shard_count() ? 1 : 0);
    rt.shard(s).post({clients[s], share, nullptr});
  }
  using clock = std::chrono::steady_clock;
  std::this_thread::sleep_for(std::chrono::duration<double>(options.warmup_s));
  const uint64_t messages_before = g_messages.load();
  const uint64_t handshakes_before = g_handshakes.load();
  const uint64_t resumed_before = g_resumed.load();
  const double cpu_before = options.server_pid ? process_cpu_s(options.server_pid) : 0;
  const double own_cpu_before = process_cpu_s(getpid());
  const auto started = clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(options.duration_s));
  const uint64_t messages = g_messages.load() - messages_before;
  const uint64_t handshakes = g_handshakes.load() - handshakes_before;
  const uint64_t resumed = g_resumed.load() - resumed_before;
  const double cpu = options.server_pid ? process_cpu_s(options.server_pid) - cpu_before : 0;
  const double own_cpu = process_cpu_s(getpid()) - own_cpu_before;
  const double seconds = std::chrono::duration<double>(clock::now() - started).count();
  g_running = false;
  rt.stop();
  rt.join();
  if (tls_context) {
    std::printf("{\"mode\":\"tls-handshakes\",\"connections\":%u,\"handshakes\":%llu,\"resumed\":%llu,\"seconds\":%.3f,"
                "\"handshakes_per_s\":%.0f,\"server_cpu_s\":%.3f,\"server_cpu_us_per_handshake\":%.1f,\"errors\":%llu}\n",
                options.connections, static_cast<unsigned long long>(handshakes),
                static_cast<unsigned long long>(resumed), seconds,
                static_cast<double>(handshakes) / seconds, cpu, handshakes ? cpu * 1e6 / static_cast<double>(handshakes) : 0.0,
                static_cast<unsigned long long>(g_errors.load()));
    return g_errors.load() == 0 && handshakes > 0 ? 0 : 1;
  }
  std::printf("{\"size\":%u,\"connections\":%llu,\"depth\":%u,\"messages\":%llu,\"seconds\":%.3f,"
              "\"messages_per_s\":%.0f,\"server_cpu_s\":%.3f,\"server_cpu_us_per_message\":%.4f,"
              "\"client_cpu_s\":%.3f,\"total_cpu_us_per_message\":%.4f,\"errors\":%llu}\n",
              options.size_bytes, static_cast<unsigned long long>(g_open.load()), options.depth,
              static_cast<unsigned long long>(messages), seconds, static_cast<double>(messages) / seconds, cpu,
              messages ? cpu * 1e6 / static_cast<double>(messages) : 0.0, own_cpu,
              messages ? (cpu + own_cpu) * 1e6 / static_cast<double>(messages) : 0.0,
              static_cast<unsigned long long>(g_errors.load()));
  return g_errors.load() == 0 && messages > 0 ? 0 : 1;
}

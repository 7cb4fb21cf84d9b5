// Raw BoringSSL handshake cost through gatehouse's tls::Session (memory
// buffers, no sockets): full mutual TLS 1.3 with ECDSA P-256 certificates from
// `gatehouse certs`. Reports the server side alone (manual timing around the
// server's handshake steps), which is what an auth thread spends per agent,
// and the whole exchange (client + server) for reference; then the same for a
// handshake resumed from a session ticket. Then one record's seal and open.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>

#include "tls/pki.h"
#include "tls/session.h"

using namespace gatehouse::tls;

namespace {

struct Material {
  Material() {
    char pattern[] = "/tmp/gatehouse-tls-bench-XXXXXX";
    dir = mkdtemp(pattern);
    std::string summary;
    init_ca({.dir = dir}, summary);
    issue({.ca_dir = dir, .out_dir = dir, .role = CertRole::gateway, .name = "gw1.example.test"}, summary);
    issue({.ca_dir = dir, .out_dir = dir, .role = CertRole::agent, .name = "web01.example.test"}, summary);
    std::string why;
    server = Context::load({Side::server, dir + "/gw1.example.test.crt", dir + "/gw1.example.test.key", dir + "/ca.crt"}, why);
    client = Context::load({.side = Side::client, .cert_path = dir + "/web01.example.test.crt",
                            .key_path = dir + "/web01.example.test.key", .ca_path = dir + "/ca.crt",
                            .resume_sessions = false}, why);
    resuming_client =
        Context::load({Side::client, dir + "/web01.example.test.crt", dir + "/web01.example.test.key", dir + "/ca.crt"}, why);
  }
  ~Material() { std::filesystem::remove_all(dir); }
  std::string dir;
  std::shared_ptr<const Context> server;
  std::shared_ptr<const Context> client;           // offers no ticket: full handshakes
  std::shared_ptr<const Context> resuming_client;  // keeps each handshake's ticket for the next
};

const Material& material() {
  static Material instance;
  return instance;
}

// Runs a handshake between two fresh sessions; returns the seconds spent in
// the server's steps, and in *ok whether it completed as expected.
double establish(Session& client, Session& server, bool resume, bool* ok) {
  std::array<std::byte, 16 * 1024> buffer{};
  double server_seconds = 0;
  for (int round = 0; round < 10; ++round) {
    client.handshake();
    while (size_t n = client.pull_ciphertext(buffer)) server.push_ciphertext(std::span(buffer).first(n));
    const auto started = std::chrono::steady_clock::now();
    const HandshakeState state = server.handshake();
    server_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    while (size_t n = server.pull_ciphertext(buffer)) client.push_ciphertext(std::span(buffer).first(n));
    if (state == HandshakeState::established) {
      std::array<std::byte, 64> plaintext{};
      *ok = client.handshake() == HandshakeState::established && server.peer_identity() == "web01.example.test" &&
            client.read(plaintext) == 0 && server.resumed() == resume;
      return server_seconds;
    }
  }
  *ok = false;
  return server_seconds;
}

// One handshake, full or resumed as asked; returns the seconds spent in the
// server's steps.
double handshake(bool resume, bool* ok) {
  Session client(resume ? material().resuming_client : material().client, "gw1.example.test");
  Session server(material().server);
  return establish(client, server, resume, ok);
}

// range(0): 1 = resumed from a ticket, 0 = full.
void BM_tls13_mutual_server_side(benchmark::State& state) {
  const bool resume = state.range(0) == 1;
  bool ok = true;
  if (resume) handshake(true, &ok);  // untimed: the first ticket comes from a full handshake
  ok = true;
  for (auto _ : state) {
    state.SetIterationTime(handshake(resume, &ok));
    if (!ok) state.SkipWithError(resume ? "handshake failed or did not resume" : "handshake failed");
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_tls13_mutual_both_sides(benchmark::State& state) {
  const bool resume = state.range(0) == 1;
  bool ok = true;
  if (resume) handshake(true, &ok);
  ok = true;
  for (auto _ : state) {
    handshake(resume, &ok);
    if (!ok) state.SkipWithError(resume ? "handshake failed or did not resume" : "handshake failed");
  }
  state.SetItemsProcessed(state.iterations());
}

// One TLS record of range(0) plaintext bytes, client to server, on an
// established session: the client seals (SSL_write into the byte queue, then
// the ciphertext pulled out) and the server opens (ciphertext pushed in, then
// SSL_read). range(1): 0 times the sealing side, 1 the opening side.
void BM_record(benchmark::State& state) {
  const auto plaintext_bytes = static_cast<size_t>(state.range(0));
  const bool open_side = state.range(1) == 1;
  Session client(material().client, "gw1.example.test");
  Session server(material().server);
  bool ok = false;
  establish(client, server, false, &ok);
  std::vector<std::byte> plaintext(plaintext_bytes, std::byte{0x5a});
  std::vector<std::byte> ciphertext(plaintext_bytes + 256);
  std::vector<std::byte> opened(plaintext_bytes);
  for (auto _ : state) {
    const auto sealing = std::chrono::steady_clock::now();
    ok = ok && client.write(plaintext);
    const size_t sealed_bytes = client.pull_ciphertext(ciphertext);
    const auto opening = std::chrono::steady_clock::now();
    server.push_ciphertext(std::span(ciphertext).first(sealed_bytes));
    ok = ok && server.read(opened) == static_cast<int64_t>(plaintext_bytes);
    const auto done = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(open_side ? done - opening : opening - sealing).count());
    if (!ok) {
      state.SkipWithError("the record did not round-trip");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(plaintext_bytes));
}

}  // namespace

BENCHMARK(BM_record)->ArgNames({"bytes", "open"})->ArgsProduct({{256, 16384}, {0, 1}})->UseManualTime();
BENCHMARK(BM_tls13_mutual_server_side)->ArgName("resumed")->Arg(0)->Arg(1)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_tls13_mutual_both_sides)->ArgName("resumed")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
// The box's raw handshake rate, every core doing both sides: what a reconnect
// storm (load generator and gateway on the same cores) is compared to.
BENCHMARK(BM_tls13_mutual_both_sides)
    ->ArgName("resumed")
    ->Arg(0)
    ->Threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())))
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

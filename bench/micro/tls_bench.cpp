// Raw BoringSSL handshake cost through gatehouse's tls::Session (memory
// buffers, no sockets): full mutual TLS 1.3 with ECDSA P-256 certificates from
// `gatehouse certs`. Reports the server side alone (manual timing around the
// server's handshake steps), which is what an auth thread spends per agent,
// and the whole exchange (client + server) for reference.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "gatehouse/tls/pki.h"
#include "gatehouse/tls/session.h"

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
    server = Context::load({Side::server, dir + "/gw1.example.test.crt", dir + "/gw1.example.test.key", dir + "/ca.crt", ""}, why);
    client = Context::load({Side::client, dir + "/web01.example.test.crt", dir + "/web01.example.test.key", dir + "/ca.crt", ""}, why);
  }
  ~Material() { std::filesystem::remove_all(dir); }
  std::string dir;
  std::shared_ptr<const Context> server;
  std::shared_ptr<const Context> client;
};

const Material& material() {
  static Material instance;
  return instance;
}

// One full handshake; returns the seconds spent in the server's steps.
double handshake(bool* ok) {
  Session client(material().client, "gw1.example.test");
  Session server(material().server);
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
      *ok = client.handshake() == HandshakeState::established && server.peer_identity() == "web01.example.test";
      return server_seconds;
    }
  }
  *ok = false;
  return server_seconds;
}

void BM_tls13_mutual_full_server_side(benchmark::State& state) {
  for (auto _ : state) {
    bool ok = false;
    state.SetIterationTime(handshake(&ok));
    if (!ok) state.SkipWithError("handshake failed");
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_tls13_mutual_full_both_sides(benchmark::State& state) {
  for (auto _ : state) {
    bool ok = false;
    handshake(&ok);
    if (!ok) state.SkipWithError("handshake failed");
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

BENCHMARK(BM_tls13_mutual_full_server_side)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_tls13_mutual_full_both_sides)->Unit(benchmark::kMicrosecond);

// TLS termination on the runtime with handshakes on the worker pool: real
// sockets on loopback, real certificates, every byte verified.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include "gatehouse/net/tls_server.h"
#include "gatehouse/runtime/runtime.h"
#include "test_client.h"
#include "test_pki.h"
#include "test_support.h"

using namespace gatehouse;
using namespace gatehouse::runtime;
using namespace std::chrono_literals;

namespace {

class EchoPlain final : public net::PlainHandler {
 public:
  void on_established(net::TlsServer&, Shard&, net::Conn&, const tls::PeerIdentity& peer) override {
    if (peer.name == "web01.example.test" && !peer.gateway_eku) established.fetch_add(1);
  }
  void on_plaintext(net::TlsServer& tls, Shard& shard, net::Conn& conn, std::span<const std::byte> bytes) override {
    tls.send(shard, conn, bytes);
  }
  void on_closed(net::TlsServer&, Shard&, net::Conn&) override {}
  std::atomic<uint64_t> established{0};
};

std::vector<std::byte> message_for(uint64_t number) {
  std::vector<std::byte> message(3000);
  for (size_t i = 0; i < message.size(); ++i) message[i] = static_cast<std::byte>((number * 31 + i) & 0xFF);
  return message;
}

// Client side, TLS inline on its shard: handshake, send a message, expect it back.
class TlsClients final : public Service, public Mailbox {
 public:
  enum class Mode { once, silent, stream };  // stream: echo again and again until `stop_streaming`

  TlsClients(PeerAddress target, std::shared_ptr<const tls::Context> context, Mode mode)
      : target_(target), context_(std::move(context)), mode_(mode), states_(4'096) {}

  void on_message(Shard& shard, uint64_t connections, void*) override {
    for (uint64_t i = 0; i < connections; ++i) CHECK(shard.connect(target_, i));
  }
  void on_open(Shard& shard, ConnId id, uint64_t number) override {
    State& state = states_[id.index];
    state = {};
    state.session = std::make_unique<tls::Session>(context_, "gw1.example.test");
    state.expected = message_for(number);
    if (mode_ != Mode::silent) drive(shard, id);
  }
  void on_data(Shard& shard, ConnId id, std::span<const std::byte> bytes) override {
    State& state = states_[id.index];
    state.session->push_ciphertext(bytes);
    if (!state.established) drive(shard, id);
    if (!state.established) return;
    std::array<std::byte, 16 * 1024> plaintext{};
    int64_t n = 0;
    while ((n = state.session->read(plaintext)) > 0) {
      state.received.insert(state.received.end(), plaintext.begin(), plaintext.begin() + n);
    }
    if (state.received.size() >= state.expected.size()) {
      if (state.received == state.expected) verified.fetch_add(1); else corrupt.fetch_add(1);
      if (mode_ == Mode::stream && !stop_streaming.load()) {
        const auto now = std::chrono::steady_clock::now();
        if (state.last_echo != std::chrono::steady_clock::time_point{}) {
          const auto gap_ms = static_cast<uint64_t>(
              std::chrono::duration_cast<std::chrono::milliseconds>(now - state.last_echo).count());
          if (gap_ms > max_gap_ms.load()) max_gap_ms.store(gap_ms);
        }
        state.last_echo = now;
        state.received.clear();
        state.session->write(state.expected);
        std::array<std::byte, 16 * 1024> out{};
        while (size_t m = state.session->pull_ciphertext(out)) shard.send(id, std::span(out).first(m));
        return;
      }
      shard.close(id);
    }
  }
  void on_close(Shard&, ConnId id, int) override {
    states_[id.index].session.reset();
    closed.fetch_add(1);
  }
  void on_connect_failed(Shard&, uint64_t, int) override { connect_failed.fetch_add(1); }

  std::atomic<uint64_t> verified{0};
  std::atomic<uint64_t> corrupt{0};
  std::atomic<uint64_t> failed{0};
  std::atomic<uint64_t> closed{0};
  std::atomic<uint64_t> connect_failed{0};
  std::atomic<bool> stop_streaming{false};
  std::atomic<uint64_t> max_gap_ms{0};  // longest wait for an echo while streaming

 private:
  struct State {
    std::unique_ptr<tls::Session> session;
    std::vector<std::byte> expected;
    std::vector<std::byte> received;
    std::chrono::steady_clock::time_point last_echo{};
    bool established = false;
  };

  void drive(Shard& shard, ConnId id) {
    State& state = states_[id.index];
    const tls::HandshakeState result = state.session->handshake();
    std::array<std::byte, 16 * 1024> out{};
    if (result == tls::HandshakeState::established) {
      state.established = true;
      state.session->write(state.expected);
    }
    while (size_t n = state.session->pull_ciphertext(out)) shard.send(id, std::span(out).first(n));
    if (result == tls::HandshakeState::failed) {
      failed.fetch_add(1);
      shard.close(id);
    }
  }

  PeerAddress target_;
  std::shared_ptr<const tls::Context> context_;
  Mode mode_;
  std::vector<State> states_;
};

// A gateway-like TLS listener: one shard, handshakes on a 2-thread pool.
struct TlsListener {
  explicit TlsListener(uint32_t handshake_timeout_ms, uint32_t queue_capacity = 256,
                       const std::string& cert = tls::pki().path("gw1.example.test.crt"),
                       const std::string& key = tls::pki().path("gw1.example.test.key"))
      : live(settings(handshake_timeout_ms)),
        context({tls::Side::server, cert, key, tls::pki().path("ca.crt")}),
        pool(2, queue_capacity), runtime(limits()) {
    REQUIRE(context.reload() == "");
    std::string why;
    REQUIRE(make_address("127.0.0.1", 0, address, why));
    uint16_t port = 0;
    REQUIRE(runtime.listen(address, 0, port, why));
    REQUIRE(make_address("127.0.0.1", port, address, why));
    REQUIRE_MESSAGE(runtime.start([&](uint32_t) {
      return std::make_unique<net::TlsServer>(context, pool, echo, limits().connections_per_shard,
                                              net::TlsServerLimits{live});
    }, why), why);
  }
  static RuntimeLimits limits() {
    RuntimeLimits l;
    l.shards = 1;
    l.connections_per_shard = 4'096;
    return l;
  }
  static gatehouse::config::Config settings(uint32_t handshake_timeout_ms) {
    gatehouse::config::Config config;
    config.timeouts.handshake_timeout_ms = handshake_timeout_ms;
    return config;
  }
  gatehouse::config::LiveSettings live;
  tls::ReloadableContext context;
  WorkerPool pool;
  EchoPlain echo;
  PeerAddress address;
  Runtime runtime;  // last: stopped before the rest goes
};

struct Clients {
  Clients(const PeerAddress& target, const std::string& agent, TlsClients::Mode mode = TlsClients::Mode::once)
      : runtime(TlsListener::limits()) {
    std::string why;
    auto context = tls::Context::load({tls::Side::client, tls::pki().path(agent + ".crt"), tls::pki().path(agent + ".key"),
                                       tls::pki().path("ca.crt")}, why);
    REQUIRE_MESSAGE(context != nullptr, why);
    REQUIRE(runtime.start([&](uint32_t) {
      auto service = std::make_unique<TlsClients>(target, context, mode);
      clients = service.get();
      return service;
    }, why));
  }
  void connect(uint64_t count) { REQUIRE(gatehouse::testing::tell(runtime, 0, count)); }
  TlsClients* clients = nullptr;
  Runtime runtime;
};

}  // namespace

TEST_CASE("TLS listener: 200 mutual-TLS agents, handshakes on the pool, every byte echoed") {
  TlsListener listener(5'000);
  Clients agents(listener.address, "web01.example.test");
  agents.connect(200);
  const bool done = testing::wait_until([&] { return agents.clients->closed.load() == 200; }, 20s);
  INFO("closed=" << agents.clients->closed.load() << " verified=" << agents.clients->verified.load() << " failed=" << agents.clients->failed.load() << " server established=" << listener.echo.established.load() << " connect_failed=" << agents.clients->connect_failed.load());
  REQUIRE(done);
  CHECK(agents.clients->verified == 200);
  CHECK(agents.clients->corrupt == 0);
  CHECK(agents.clients->failed == 0);
  CHECK(listener.echo.established == 200);
}

TEST_CASE("TLS listener: an expired agent is refused with event 21007; a silent one times out with 30031") {
  const std::string log_path = (tls::pki().dir / "listener.log").string();
  std::string log_text;
  {
    testing::StderrCapture capture(log_path);
    TlsListener listener(300);
    Clients expired(listener.address, "old.example.test");
    Clients silent(listener.address, "web01.example.test", TlsClients::Mode::silent);
    expired.connect(3);
    silent.connect(2);
    REQUIRE(testing::wait_until([&] { return expired.clients->closed.load() == 3 && silent.clients->closed.load() == 2; }, 20s));
    CHECK(expired.clients->verified == 0);
    CHECK(listener.echo.established == 0);
    log_text = capture.text();
  }
  CHECK(log_text.find(R"("event":21007,"name":"mutual_auth_failed")") != std::string::npos);
  CHECK(log_text.find("the client's certificate /CN=old.example.test expired on") != std::string::npos);
  CHECK(log_text.find(R"("event":30031,"name":"handshake_timeout")") != std::string::npos);
  CHECK(log_text.find(R"("peer":"127.0.0.1:)") != std::string::npos);
}

TEST_CASE("TLS listener: a storm of 2,000 handshakes does not stall 100 streaming sessions (bound: 1 s)") {
  TlsListener listener(30'000, 4'096);
  Clients streaming(listener.address, "web01.example.test", TlsClients::Mode::stream);
  streaming.connect(100);
  REQUIRE(testing::wait_until([&] { return streaming.clients->verified.load() >= 1'000; }, 30s));
  streaming.clients->max_gap_ms = 0;  // measure from here: the storm
  const uint64_t echoes_before = streaming.clients->verified.load();

  Clients storm(listener.address, "web01.example.test");
  storm.connect(2'000);
  const auto started = std::chrono::steady_clock::now();
  REQUIRE(testing::wait_until([&] { return storm.clients->closed.load() == 2'000; }, 120s));
  const auto storm_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();

  streaming.clients->stop_streaming = true;
  MESSAGE("storm of 2,000 handshakes took " << storm_ms << " ms; longest echo gap of a streaming session: "
                                            << streaming.clients->max_gap_ms.load() << " ms; echoes during the storm: "
                                            << streaming.clients->verified.load() - echoes_before);
  CHECK(storm.clients->verified == 2'000);
  CHECK(streaming.clients->corrupt == 0);
  CHECK(streaming.clients->verified.load() - echoes_before > 100);  // they kept flowing
  CHECK(streaming.clients->max_gap_ms.load() < 1'000);
}

TEST_CASE("TLS listener: a ClientHello dripped a byte at a time runs out of the client's time (30031) like a silent one") {
  const std::string log_path = (tls::pki().dir / "drip.log").string();
  std::string log_text;
  bool closed = false;
  double elapsed_s = 0;
  size_t bytes_sent = 0;
  {
    testing::StderrCapture capture(log_path);
    TlsListener listener(600);
    const uint16_t port = ntohs(reinterpret_cast<const sockaddr_in&>(listener.address.storage).sin_port);
    testing::BlockingClient client(tls::pki().client("web01.example.test"), "gw1.example.test", port);
    REQUIRE(client.session.handshake() == tls::HandshakeState::in_progress);  // the ClientHello, not sent yet
    std::vector<std::byte> hello(client.session.pending_ciphertext_bytes());
    hello.resize(client.session.pull_ciphertext(hello));
    REQUIRE(hello.size() > 50);
    // A byte every 200 ms: each one used to re-arm the 600 ms deadline, for ever.
    const auto started = std::chrono::steady_clock::now();
    for (; bytes_sent < 50 && !closed; ++bytes_sent) {
      client.send_raw(std::span(hello).subspan(bytes_sent, 1));
      closed = client.closed_by_peer(200);
    }
    elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    log_text = capture.text();
  }
  INFO("bytes sent " << bytes_sent << " in " << elapsed_s << " s");
  CHECK(closed);
  CHECK(bytes_sent < 10);  // 600 ms of the client's time is 3 to 4 drips
  CHECK(log_text.find(R"("event":30031,"name":"handshake_timeout")") != std::string::npos);
}

namespace {

// Replaces `to` by `from` the way cert tools do: write aside, then rename.
void replace_file(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::filesystem::copy_file(from, to.string() + ".new", std::filesystem::copy_options::overwrite_existing);
  std::filesystem::rename(to.string() + ".new", to);
}

// True when a new TLS session to the listener is served `context`'s certificate.
bool new_session_gets(uint16_t port, const std::shared_ptr<const tls::Context>& context) {
  testing::BlockingClient probe(tls::pki().client("web01.example.test"), "gw1.example.test", port);
  if (!probe.handshake()) return false;
  bssl::UniquePtr<X509> served(SSL_get_peer_certificate(probe.session.ssl()));
  return served != nullptr && X509_cmp(served.get(), SSL_CTX_get0_certificate(context->get())) == 0;
}

}  // namespace

TEST_CASE("TLS listener: a renewal on disk serves new sessions while 100 live ones keep flowing; a corrupt file is refused") {
  namespace fs = std::filesystem;
  const fs::path live = tls::pki().dir / "reload-live";
  const fs::path renewal = tls::pki().dir / "reload-renewal";
  fs::create_directories(live);
  fs::create_directories(renewal);
  fs::copy_file(tls::pki().path("gw1.example.test.crt"), live / "cert.pem", fs::copy_options::overwrite_existing);
  fs::copy_file(tls::pki().path("gw1.example.test.key"), live / "key.pem", fs::copy_options::overwrite_existing);
  std::string summary;
  REQUIRE(tls::issue({.ca_dir = tls::pki().dir.string(), .out_dir = renewal.string(), .role = tls::CertRole::gateway,
                      .name = "gw1.example.test", .days = 30},
                     summary) == "");

  const std::string log_path = (tls::pki().dir / "reload-live.log").string();
  std::string log_text;
  {
    testing::StderrCapture capture(log_path);
    TlsListener listener(30'000, 256, (live / "cert.pem").string(), (live / "key.pem").string());
    tls::FileWatcher watcher(listener.context.paths(), 100, [&] { listener.context.reload(); });
    REQUIRE(watcher.ok());
    const uint16_t port = ntohs(reinterpret_cast<const sockaddr_in&>(listener.address.storage).sin_port);
    const auto original = listener.context.current();
    Clients streaming(listener.address, "web01.example.test", TlsClients::Mode::stream);
    streaming.connect(100);
    REQUIRE(testing::wait_until([&] { return streaming.clients->verified.load() >= 500; }, 30s));
    CHECK(new_session_gets(port, original));

    replace_file(renewal / "gw1.example.test.key", live / "key.pem");
    replace_file(renewal / "gw1.example.test.crt", live / "cert.pem");
    REQUIRE(testing::wait_until([&] { return listener.context.current() != original; }, 10s));
    const auto renewed = listener.context.current();
    CHECK(new_session_gets(port, renewed));
    uint64_t echoes = streaming.clients->verified.load();
    REQUIRE(testing::wait_until([&] { return streaming.clients->verified.load() >= echoes + 500; }, 30s));

    std::ofstream(live / "cert.pem.new") << "-----BEGIN CERTIFICATE-----\nnot a certificate\n";
    fs::rename(live / "cert.pem.new", live / "cert.pem");
    REQUIRE(testing::wait_until([&] { return capture.text().find(R"("event":20051)") != std::string::npos; }, 10s));
    CHECK(listener.context.current() == renewed);  // the renewed material stays in use
    CHECK(new_session_gets(port, renewed));
    echoes = streaming.clients->verified.load();
    REQUIRE(testing::wait_until([&] { return streaming.clients->verified.load() >= echoes + 500; }, 30s));

    streaming.clients->stop_streaming = true;
    CHECK(streaming.clients->closed.load() == 0);  // none of the 100 was dropped by either reload
    CHECK(streaming.clients->corrupt.load() == 0);
    log_text = capture.text();
  }
  CHECK(log_text.find(R"("event":20051,"name":"certificate_invalid")") != std::string::npos);
  CHECK(log_text.find("holds no PEM certificate") != std::string::npos);
}

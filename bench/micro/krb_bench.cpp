// Raw gss_accept_sec_context cost (MIT krb5), what an auth thread spends per
// Kerberos agent: AP-REQs with RFC 9266 channel bindings from one agent
// credential, accepted against a keytab, replay cache on. A throwaway KDC
// (tests/krb/kdc) is started for the run; only the accept is timed.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "krb/gss.h"

using namespace gatehouse::krb;

namespace {

struct Realm {
  Realm() {
    char pattern[] = "/tmp/gatehouse-krb-bench-XXXXXX";
    dir = mkdtemp(pattern);
    script = std::string(GATEHOUSE_SOURCE_ROOT) + "/tests/krb/kdc";
    ok = std::system((script + " start " + dir + " gatehouse/gw1.example.test host/web01.example.test >/dev/null").c_str()) == 0;
    setenv("KRB5_CONFIG", (dir + "/krb5.conf").c_str(), 1);
    setenv("KRB5RCACHEDIR", dir.c_str(), 1);
    std::string why;
    acceptor = AcceptorCredential::load(dir + "/gw1.keytab", why);
    initiator = InitiatorCredential::load(dir + "/web01.keytab", "host/web01.example.test", why);
    ok = ok && acceptor && initiator;
  }
  ~Realm() {
    acceptor.reset();
    initiator.reset();
    std::system((script + " stop " + dir).c_str());
    std::filesystem::remove_all(dir);
  }
  std::string dir;
  std::string script;
  bool ok = false;
  std::shared_ptr<const AcceptorCredential> acceptor;
  std::shared_ptr<const InitiatorCredential> initiator;
};

void BM_gss_accept_with_channel_binding(benchmark::State& state) {
  static Realm realm;
  if (!realm.ok) {
    state.SkipWithError("could not start a KDC (tests/krb/kdc)");
    return;
  }
  ChannelBinding binding{};
  for (auto _ : state) {
    binding[0]++;
    binding[1] = static_cast<uint8_t>(binding[0] == 0 ? binding[1] + 1 : binding[1]);
    Initiator initiator(realm.initiator, "gatehouse", "gw1.example.test", binding);
    const Step request = initiator.step({});
    const auto started = std::chrono::steady_clock::now();
    Acceptor acceptor(realm.acceptor, binding);
    const Step accepted = acceptor.step(request.token);
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    if (accepted.state != Step::complete) {
      state.SkipWithError(accepted.error.c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

BENCHMARK(BM_gss_accept_with_channel_binding)->UseManualTime()->Unit(benchmark::kMicrosecond);

#include "gatehouse/net/address_book.h"

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include "gatehouse/runtime/runtime.h"

namespace gatehouse::net {
namespace {

constexpr time_t kProbeTimeoutS = 2;  // a failback probe's TCP connect

std::vector<config::Endpoint> endpoints_of(const std::vector<config::Peer>& peers) {
  std::vector<config::Endpoint> endpoints;
  endpoints.reserve(peers.size());
  for (const config::Peer& peer : peers) endpoints.push_back(peer.address);
  return endpoints;
}

}  // namespace

AddressBook::AddressBook(const std::vector<config::Peer>& peers, uint32_t refresh_interval_ms)
    : endpoints_(endpoints_of(peers)),
      refresh_interval_ms_(refresh_interval_ms),
      answers_(peers.size()),
      named_(peers.size(), false),
      wanted_(peers.size(), false),
      probe_wanted_(peers.size(), false),
      reachable_(peers.size()) {
  bool any_named = false;
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    runtime::PeerAddress numeric;
    std::string ignored;
    named_[i] = !runtime::make_address(endpoints_[i].host, endpoints_[i].port, numeric, ignored);
    any_named = any_named || named_[i];
    resolve(i);
  }
  if (any_named || endpoints_.size() > 1) thread_ = std::thread([this] { run(); });
}

AddressBook::~AddressBook() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

bool AddressBook::lookup(size_t peer, runtime::PeerAddress& address, std::string& why) const {
  const std::shared_ptr<const Answer> answer = answers_[peer].load();
  if (answer == nullptr || !answer->resolved) {
    why = answer == nullptr ? "not resolved yet" : answer->why;
    return false;
  }
  address = answer->address;
  return true;
}

void AddressBook::refresh_soon(size_t peer) {
  if (!named_[peer]) return;
  {
    std::lock_guard lock(mutex_);
    wanted_[peer] = true;
  }
  wake_.notify_one();
}

void AddressBook::probe_soon(size_t peer) {
  {
    std::lock_guard lock(mutex_);
    probe_wanted_[peer] = true;
  }
  wake_.notify_one();
}

// A blocking connect, on the resolver thread, bounded by kProbeTimeoutS.
void AddressBook::probe(size_t peer) {
  runtime::PeerAddress address;
  std::string ignored;
  if (!lookup(peer, address, ignored)) return;
  const int fd = ::socket(address.storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  const timeval timeout{kProbeTimeoutS, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address.storage), address.size_bytes) == 0) {
    reachable_[peer].fetch_add(1, std::memory_order_release);
  }
  ::close(fd);
}

// A failed lookup keeps the last good address: a DNS hiccup must not take a
// reachable parent away.
void AddressBook::resolve(size_t peer) {
  auto answer = std::make_shared<Answer>();
  answer->resolved =
      runtime::resolve_address(endpoints_[peer].host, endpoints_[peer].port, answer->address, answer->why);
  const std::shared_ptr<const Answer> last = answers_[peer].load();
  if (!answer->resolved && last != nullptr && last->resolved) return;
  answers_[peer].store(std::move(answer));
}

void AddressBook::run() {
  std::unique_lock lock(mutex_);
  auto next_refresh = std::chrono::steady_clock::now() + std::chrono::milliseconds(refresh_interval_ms_);
  while (!stopping_) {
    wake_.wait_until(lock, next_refresh, [&] {
      if (stopping_) return true;
      for (bool wanted : wanted_) if (wanted) return true;
      for (bool wanted : probe_wanted_) if (wanted) return true;
      return false;
    });
    if (stopping_) return;
    const bool all = std::chrono::steady_clock::now() >= next_refresh;
    std::vector<bool> due = wanted_;
    std::vector<bool> probes = probe_wanted_;
    wanted_.assign(wanted_.size(), false);
    probe_wanted_.assign(probe_wanted_.size(), false);
    lock.unlock();
    for (size_t i = 0; i < endpoints_.size(); ++i) {
      if (named_[i] && (all || due[i])) resolve(i);
      if (probes[i]) probe(i);
    }
    lock.lock();
    if (all) next_refresh = std::chrono::steady_clock::now() + std::chrono::milliseconds(refresh_interval_ms_);
  }
}

const std::shared_ptr<AddressBook>& AddressBooks::replace(const std::vector<config::Peer>& peers,
                                                           uint32_t refresh_interval_ms) {
  std::erase_if(held_, [](const std::shared_ptr<AddressBook>& book) { return book.use_count() == 1; });
  held_.insert(held_.begin(), std::make_shared<AddressBook>(peers, refresh_interval_ms));
  return held_.front();
}

}  // namespace gatehouse::net

// A PKI made once per test run with `gatehouse certs` code: a dev CA, a
// partner CA, and certificates for every TLS test.
#pragma once

#include <doctest/doctest.h>

#include <ctime>
#include <filesystem>
#include <string>

#include "tls/pki.h"
#include "tls/session.h"

namespace gatehouse::tls {
namespace fs = std::filesystem;

// A dev CA, a partner CA and certificates for every test, made once.
struct Pki {
  Pki() {
    char pattern[] = "/tmp/gatehouse-tls-test-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    dir = pattern;
    fs::create_directory(dir / "partner");
    std::string summary;
    REQUIRE(init_ca({.dir = dir.string()}, summary) == "");
    REQUIRE(init_ca({.dir = (dir / "partner").string(), .common_name = "partner CA"}, summary) == "");
    make(CertRole::gateway, "gw1.example.test");
    make(CertRole::gateway, "gw1b.example.test");
    make(CertRole::agent, "web01.example.test");
    make(CertRole::agent, "notaserver.example.test");
    make(CertRole::agent, "old.example.test", 2020);
    make(CertRole::agent, "future.example.test", 2099);
    const IssueRequest partner{.ca_dir = (dir / "partner").string(), .out_dir = (dir / "partner").string(),
                               .role = CertRole::agent, .name = "web09.partner.test"};
    REQUIRE(issue(partner, summary) == "");
    make(CertRole::agent, "lost.example.test");
    REQUIRE(revoke({.ca_dir = dir.string(), .cert_path = path("lost.example.test.crt")}, summary) == "");
  }
  ~Pki() { fs::remove_all(dir); }

  void make(CertRole role, const std::string& name, int valid_from_year = 0) {
    IssueRequest request{.ca_dir = dir.string(), .out_dir = dir.string(), .role = role, .name = name};
    if (valid_from_year != 0) {
      tm date{};
      date.tm_year = valid_from_year - 1900;
      date.tm_mday = 1;
      request.not_before = timegm(&date);
      request.days = 30;
    }
    std::string summary;
    REQUIRE_MESSAGE(issue(request, summary) == "", name);
  }

  std::string path(const std::string& file) const { return (dir / file).string(); }

  std::shared_ptr<const Context> server(const std::string& name, PeerCertificate peer = PeerCertificate::required) const {
    return load({Side::server, path(name + ".crt"), path(name + ".key"), path("ca.crt"), "", peer});
  }
  std::shared_ptr<const Context> client(const std::string& name, const std::string& ca = "ca.crt") const {
    const std::string cert = name.empty() ? "" : path(name + ".crt");
    const std::string key = name.empty() ? "" : path(name + ".key");
    return load({Side::client, cert, key, path(ca), "", PeerCertificate::required});
  }
  static std::shared_ptr<const Context> load(const Context::Options& options) {
    std::string why;
    auto context = Context::load(options, why);
    REQUIRE_MESSAGE(context != nullptr, why);
    return context;
  }

  fs::path dir;
};

inline const Pki& pki() {
  static Pki instance;
  return instance;
}

}  // namespace gatehouse::tls

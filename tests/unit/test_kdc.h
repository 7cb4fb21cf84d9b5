// A real MIT KDC for the test run (tests/krb/kdc), started once on first use,
// with the principals the Kerberos tests need.
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace gatehouse::testing {

inline constexpr const char* kRealm = "GATEHOUSE.TEST";

class Kdc {
 public:
  Kdc() {
    char pattern[] = "/tmp/gatehouse-kdc-test-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    dir_ = pattern;
    script_ = std::string(GATEHOUSE_TEST_SOURCE_ROOT) + "/tests/krb/kdc";
    REQUIRE(run(script_ + " start " + dir_ +
                " gatehouse/gw1.example.test host/web01.example.test host/gone.example.test >/dev/null") == 0);
    setenv("KRB5_CONFIG", (dir_ + "/krb5.conf").c_str(), 1);
    setenv("KRB5RCACHEDIR", dir_.c_str(), 1);  // the replay cache stays in the test's folder
    // gw1.keytab goes stale: re-keying the service bumps its kvno.
    REQUIRE(kadmin("ktadd -k " + dir_ + "/gw1-current.keytab gatehouse/gw1.example.test") == 0);
    // gone.keytab keeps a key for a principal the KDC no longer knows.
    REQUIRE(kadmin("delprinc -force host/gone.example.test") == 0);
  }
  ~Kdc() {
    run(script_ + " stop " + dir_);
    std::filesystem::remove_all(dir_);
  }

  std::string keytab(const std::string& name) const { return dir_ + "/" + name + ".keytab"; }

 private:
  static int run(const std::string& command) { return std::system(command.c_str()); }
  int kadmin(const std::string& query) const {
    return run("KRB5_CONFIG=" + dir_ + "/krb5.conf KRB5_KDC_PROFILE=" + dir_ + "/kdc.conf kadmin.local -r " + kRealm +
               " -q '" + query + "' >>" + dir_ + "/kadmin.log 2>&1");
  }

  std::string dir_;
  std::string script_;
};

inline const Kdc& kdc() {
  static Kdc instance;
  return instance;
}

}  // namespace gatehouse::testing

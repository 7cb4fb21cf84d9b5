// A real PostgreSQL 15 for the test run (tests/pg/postgres): one cluster per
// Postgres object, in a temp folder, stopped and deleted at the end. Each test
// takes its own database (fresh_database), so tests never see each other's rows.
#pragma once

#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace gatehouse::testing {

class Postgres {
 public:
  Postgres() {
    char pattern[] = "/tmp/gatehouse-pg-test-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    dir_ = pattern;
    script_ = std::string(GATEHOUSE_TEST_SOURCE_ROOT) + "/tests/pg/postgres";
    REQUIRE(run("start") == 0);
    std::ifstream port_file(dir_ + "/port");
    port_file >> port_;
    REQUIRE(!port_.empty());
  }
  ~Postgres() {
    run("stop");
    std::filesystem::remove_all(dir_);
  }
  Postgres(const Postgres&) = delete;
  Postgres& operator=(const Postgres&) = delete;

  // The superuser's dsn (unix socket, trust) for `database`.
  std::string dsn(const std::string& database = "gatehouse") const {
    return "host=" + dir_ + " port=" + port_ + " user=gatehouse dbname=" + database;
  }
  const std::string& port() const { return port_; }
  // A new empty database; its dsn.
  std::string fresh_database() {
    const std::string name = "t" + std::to_string(next_database_.fetch_add(1));
    REQUIRE(psql("CREATE DATABASE " + name) == 0);
    return dsn(name);
  }
  int psql(const std::string& sql, const std::string& database = "gatehouse") const {
    return std::system(("/usr/lib/postgresql/15/bin/psql -qAt -v ON_ERROR_STOP=1 '" + dsn(database) + "' -c \"" + sql +
                        "\" >>" + dir_ + "/psql.log 2>&1")
                           .c_str());
  }
  int stop() const { return run("stop"); }
  // TLS on, with this certificate and key (PEM files).
  int enable_tls(const std::string& cert, const std::string& key) const { return run("tls", " " + cert + " " + key); }
  int restart() const { return run("restart"); }

 private:
  int run(const std::string& action, const std::string& arguments = "") const {
    return std::system((script_ + " " + action + " " + dir_ + arguments + " >>" + dir_ + "/harness.log 2>&1").c_str());
  }
  std::string dir_;
  std::string script_;
  std::string port_;
  std::atomic<int> next_database_{1};
};

}  // namespace gatehouse::testing

// Two services on one shard: connections accepted on the shard's listeners go
// to `accepted`, connections the shard opens with connect() go to `connected`
// (a gateway: agents on one side, uplinks on the other). Turn ends and stop
// go to both. Messages and timers carry their receiver and never pass here.
#pragma once

#include <memory>
#include <vector>

#include "gatehouse/runtime/shard.h"

namespace gatehouse::runtime {

class ServicePair final : public Service {
 public:
  // Shard::connect contexts the connected side uses must be >= kConnectedContextBase;
  // listeners keep contexts below it.
  static constexpr uint64_t kConnectedContextBase = uint64_t{1} << 32;

  ServicePair(std::unique_ptr<Service> accepted, std::unique_ptr<Service> connected, uint32_t connections_max)
      : accepted_(std::move(accepted)), connected_(std::move(connected)), owners_(connections_max, nullptr) {}

  void on_open(Shard& shard, ConnId id, uint64_t context) override {
    Service* owner = context >= kConnectedContextBase ? connected_.get() : accepted_.get();
    owners_[id.index] = owner;
    owner->on_open(shard, id, context);
  }
  void on_data(Shard& shard, ConnId id, std::span<const std::byte> bytes) override {
    owners_[id.index]->on_data(shard, id, bytes);
  }
  void on_close(Shard& shard, ConnId id, int error) override {
    Service* owner = owners_[id.index];
    owners_[id.index] = nullptr;
    owner->on_close(shard, id, error);
  }
  void on_connect_failed(Shard& shard, uint64_t context, int error) override {
    connected_->on_connect_failed(shard, context, error);
  }
  void on_send_space(Shard& shard, ConnId id) override {
    if (Service* owner = owners_[id.index]) owner->on_send_space(shard, id);
  }
  void on_deadline(Shard& shard, ConnId id) override {
    if (Service* owner = owners_[id.index]) owner->on_deadline(shard, id);
  }
  void on_turn_end(Shard& shard) override {
    accepted_->on_turn_end(shard);
    connected_->on_turn_end(shard);
  }
  void on_stop(Shard& shard) override {
    accepted_->on_stop(shard);
    connected_->on_stop(shard);
  }
  bool idle() const override { return accepted_->idle() && connected_->idle(); }

 private:
  std::unique_ptr<Service> accepted_;
  std::unique_ptr<Service> connected_;
  std::vector<Service*> owners_;  // by connection slot
};

}  // namespace gatehouse::runtime

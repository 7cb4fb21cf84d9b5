// Wire codec throughput: DATA frames of 64 B, 256 B and 4 KiB payloads, as a
// stream is decoded from receive buffers and encoded into send buffers.
// Reports frames/s (items) and bytes/s of wire bytes.
#include <benchmark/benchmark.h>

#include <vector>

#include "gatehouse/proto/codec.h"

using namespace gatehouse::proto;

namespace {

constexpr size_t kStreamBytes = 1 << 20;  // one batch: ~1 MiB of back-to-back frames

std::vector<std::byte> data_stream(size_t payload_bytes, size_t& frames) {
  const std::vector<std::byte> payload(payload_bytes, std::byte{0x5a});
  std::vector<std::byte> stream(kStreamBytes + kFrameMaxBytes);
  size_t used = 0;
  frames = 0;
  while (used < kStreamBytes) {
    const EncodeResult r = encode({1, Data{frames + 1, DataKind::event, payload}}, std::span(stream).subspan(used));
    used += r.size_bytes;
    ++frames;
  }
  stream.resize(used);
  return stream;
}

// The whole stream in one buffer: every frame takes the zero-copy path.
void BM_decode_contiguous(benchmark::State& state) {
  size_t frames = 0;
  const std::vector<std::byte> stream = data_stream(static_cast<size_t>(state.range(0)), frames);
  for (auto _ : state) {
    FrameDecoder decoder(nullptr);
    std::span<const std::byte> input(stream);
    uint64_t seq_sum = 0;
    while (!input.empty()) {
      const DecodeResult r = decoder.next(input);
      seq_sum += std::get<Data>(r.frame.body).seq;
    }
    benchmark::DoNotOptimize(seq_sum);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * frames));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stream.size()));
}

// The stream cut into 4 KiB receive buffers (the runtime's provided-buffer
// size): frames that straddle a boundary are reassembled in a spill buffer.
void BM_decode_4k_buffers(benchmark::State& state) {
  size_t frames = 0;
  const std::vector<std::byte> stream = data_stream(static_cast<size_t>(state.range(0)), frames);
  constexpr size_t kBufferBytes = 4096;
  SpillPool pool(1);
  for (auto _ : state) {
    FrameDecoder decoder(&pool);
    uint64_t seq_sum = 0;
    for (size_t offset = 0; offset < stream.size(); offset += kBufferBytes) {
      std::span<const std::byte> input = std::span(stream).subspan(offset, std::min(kBufferBytes, stream.size() - offset));
      while (!input.empty()) {
        const DecodeResult r = decoder.next(input);
        if (r.status == DecodeStatus::frame) seq_sum += std::get<Data>(r.frame.body).seq;
      }
    }
    benchmark::DoNotOptimize(seq_sum);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * frames));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stream.size()));
}

void BM_encode(benchmark::State& state) {
  const std::vector<std::byte> payload(static_cast<size_t>(state.range(0)), std::byte{0x5a});
  std::vector<std::byte> out(kStreamBytes + kFrameMaxBytes);
  size_t frames = 0;
  size_t bytes = 0;
  for (auto _ : state) {
    size_t used = 0;
    uint64_t seq = 1;
    while (used < kStreamBytes) {
      used += encode({1, Data{seq++, DataKind::event, payload}}, std::span(out).subspan(used)).size_bytes;
    }
    frames += seq - 1;
    bytes += used;
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(frames));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}

// Header and fixed fields only; the payload goes out by gathered write.
void BM_encode_data_prefix(benchmark::State& state) {
  const auto payload_bytes = static_cast<uint32_t>(state.range(0));
  std::vector<std::byte> out(kDataPrefixBytes * 1024);
  size_t frames = 0;
  for (auto _ : state) {
    for (uint32_t i = 0; i < 1024; ++i) {
      encode_data_prefix(1, i + 1, DataKind::event, payload_bytes, std::span(out).subspan(i * kDataPrefixBytes));
    }
    frames += 1024;
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(frames));
  state.SetBytesProcessed(static_cast<int64_t>(frames * (kDataPrefixBytes + payload_bytes)));
}

}  // namespace

BENCHMARK(BM_decode_contiguous)->Arg(64)->Arg(256)->Arg(4096);
BENCHMARK(BM_decode_4k_buffers)->Arg(64)->Arg(256)->Arg(4096);
BENCHMARK(BM_encode)->Arg(64)->Arg(256)->Arg(4096);
BENCHMARK(BM_encode_data_prefix)->Arg(64)->Arg(256)->Arg(4096);

// One micro-benchmark binary: its BENCHMARK_MAIN is in bench/micro/main.cpp.

// CRC-32C over one store record's worth of bytes and over a 64 KiB batch: the
// CPU instruction (what crc32c() uses where the CPU has it) and the portable
// table it falls back to. Reports bytes/s.
#include <benchmark/benchmark.h>

#include <vector>

#include "gatehouse/store/crc32c.h"

namespace {

template <uint32_t (*Crc)(const std::byte*, size_t)>
void BM_crc32c(benchmark::State& state) {
  const std::vector<std::byte> bytes(static_cast<size_t>(state.range(0)), std::byte{0xA5});
  for (auto _ : state) benchmark::DoNotOptimize(Crc(bytes.data(), bytes.size()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
  state.SetLabel(Crc == &gatehouse::store::crc32c && gatehouse::store::crc32c_in_hardware() ? "sse4.2" : "table");
}

BENCHMARK(BM_crc32c<gatehouse::store::crc32c>)->Name("BM_crc32c")->Arg(256)->Arg(65'536);
BENCHMARK(BM_crc32c<gatehouse::store::crc32c_portable>)->Name("BM_crc32c_portable")->Arg(256)->Arg(65'536);

}  // namespace

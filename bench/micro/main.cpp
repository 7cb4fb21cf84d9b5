// The micro benchmarks (codec, TLS handshakes) in one binary: the "physical
// limits" the end-to-end results are compared to.
#include <benchmark/benchmark.h>

BENCHMARK_MAIN();

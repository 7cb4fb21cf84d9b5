// CRC-32C (Castagnoli), the checksum of every store and disk-queue record.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gatehouse::store {

// With the CPU's CRC32 instruction where it has one (SSE4.2), else a table.
uint32_t crc32c(const std::byte* data, size_t size);

// The portable table implementation alone: the reference the hardware path
// must match (tests and the micro benchmark compare them).
uint32_t crc32c_portable(const std::byte* data, size_t size);

// True when crc32c() uses the CPU instruction on this machine.
bool crc32c_in_hardware();

}  // namespace gatehouse::store

// libFuzzer target for the v1 frame decoder. Beyond "no crash, no UB", it
// checks two properties on every input:
//  - decoding is independent of how the bytes are chunked (whole vs. split at
//    sizes taken from the input), including which error ends the stream;
//  - encoding is canonical: every decoded frame re-encodes to its exact bytes.
#include <cstdlib>
#include <cstring>
#include <vector>

#include "gatehouse/proto/codec.h"

using namespace gatehouse::proto;

namespace {

struct Outcome {
  std::vector<std::vector<std::byte>> frames;  // re-encoded
  ProtoError error = ProtoError::none;
  bool mid_frame = false;
};

std::vector<std::byte> reencode(const Frame& frame) {
  std::vector<std::byte> out(kFrameMaxBytes);
  const EncodeResult result = encode(frame, out);
  if (result.error != ProtoError::none) abort();  // decoded frames must be encodable
  out.resize(result.size_bytes);
  return out;
}

Outcome decode(std::span<const std::byte> data, size_t chunk_size_bytes) {
  SpillPool pool(1);
  FrameDecoder decoder(&pool);
  Outcome outcome;
  while (!data.empty() && outcome.error == ProtoError::none) {
    std::span<const std::byte> chunk = data.first(std::min(chunk_size_bytes, data.size()));
    data = data.subspan(chunk.size());
    while (!chunk.empty()) {
      const DecodeResult result = decoder.next(chunk);
      if (result.status == DecodeStatus::error) {
        outcome.error = result.error;
        break;
      }
      if (result.status == DecodeStatus::frame) outcome.frames.push_back(reencode(result.frame));
    }
  }
  outcome.mid_frame = decoder.mid_frame();
  return outcome;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
  const Outcome whole = decode(input, size);

  // Canonical encoding: the frames, concatenated, are a prefix of the input.
  size_t offset = 0;
  for (const auto& frame : whole.frames) {
    if (offset + frame.size() > size || std::memcmp(data + offset, frame.data(), frame.size()) != 0) abort();
    offset += frame.size();
  }

  const size_t chunk_size_bytes = size == 0 ? 1 : 1 + data[0] % 97;
  const Outcome chunked = decode(input, chunk_size_bytes);
  if (chunked.frames != whole.frames || chunked.error != whole.error) abort();
  if (whole.error == ProtoError::none && chunked.mid_frame != whole.mid_frame) abort();
  return 0;
}

#include "common/record_file.hpp"

#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "common/error.hpp"
#include "common/frame.hpp"
#include "common/payload_codec.hpp"

namespace v2p {
namespace {

using frame::bytes_of;
using frame::FrameHeader;

struct StreamHeader {
  char magic[8];
  std::uint32_t version;
  std::uint32_t reserved;
};
static_assert(sizeof(StreamHeader) == 16);

}  // namespace

std::vector<std::byte> encode_vdisk_declaration(const VdiskDeclaration& d) {
  PayloadWriter out;
  out.put(d.vm_id);
  out.put(d.vdisk_id);
  out.put_string(d.vm_name);
  out.put_string(d.vdisk_name);
  out.put_string(d.image_path);
  return std::move(out).take();
}

VdiskDeclaration decode_vdisk_declaration(std::span<const std::byte> payload) {
  PayloadReader in(payload, "vdisk declaration frame");
  VdiskDeclaration d;
  d.vm_id = in.get<std::uint32_t>();
  d.vdisk_id = in.get<std::uint32_t>();
  d.vm_name = in.get_string();
  d.vdisk_name = in.get_string();
  d.image_path = in.get_string();
  in.expect_end();
  return d;
}

template <class T>
T decode_fixed(std::span<const std::byte> payload) {
  return frame::decode_fixed<T>(payload, "frame payload");
}
template ContextRecord decode_fixed<ContextRecord>(std::span<const std::byte>);
template PhysEvent decode_fixed<PhysEvent>(std::span<const std::byte>);
template LostEvents decode_fixed<LostEvents>(std::span<const std::byte>);
template BackendProcess decode_fixed<BackendProcess>(std::span<const std::byte>);

FrameParser::FrameParser(std::span<const std::byte> data) : data_(data) {
  StreamHeader h{};
  if (data.size() < sizeof h) throw Error("not a v2p stream: shorter than its header");
  std::memcpy(&h, data.data(), sizeof h);
  if (std::memcmp(h.magic, kStreamMagic, sizeof h.magic) != 0) {
    throw Error("not a v2p stream: bad magic");
  }
  if (h.version != kStreamVersion) {
    throw Error("v2p stream version " + std::to_string(h.version) +
                " is not supported (this build reads version " + std::to_string(kStreamVersion) +
                ")");
  }
  pos_ = sizeof h;
}

std::optional<Frame> FrameParser::next() {
  if (pos_ == data_.size()) return std::nullopt;
  FrameHeader h{};
  if (data_.size() - pos_ < sizeof h) throw Error("v2p stream ends inside a frame header");
  std::memcpy(&h, data_.data() + pos_, sizeof h);
  if (h.length > kMaxFramePayload) {
    throw Error("v2p stream frame of " + std::to_string(h.length) + " bytes exceeds the limit");
  }
  if (data_.size() - pos_ - sizeof h < h.length) throw Error("v2p stream ends inside a frame");
  Frame f;
  f.type = static_cast<FrameType>(h.type);
  const auto* begin = data_.data() + pos_ + sizeof h;
  f.payload.assign(begin, begin + h.length);
  pos_ += sizeof h + h.length;
  return f;
}

StreamWriter::StreamWriter(const std::filesystem::path& path) : path_(path) {
  file_ = std::fopen(path.c_str(), "wb");
  if (file_ == nullptr) throw system_error("cannot create stream file " + path.string());
  StreamHeader h{};
  std::memcpy(h.magic, kStreamMagic, sizeof h.magic);
  h.version = kStreamVersion;
  if (std::fwrite(&h, sizeof h, 1, file_) != 1) throw system_error("cannot write " + path.string());
}

StreamWriter::~StreamWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void StreamWriter::write(FrameType type, std::span<const std::byte> payload) {
  FrameHeader h{static_cast<std::uint16_t>(type), 0, static_cast<std::uint32_t>(payload.size())};
  if (std::fwrite(&h, sizeof h, 1, file_) != 1 ||
      (!payload.empty() && std::fwrite(payload.data(), payload.size(), 1, file_) != 1)) {
    throw system_error("cannot write " + path_.string());
  }
}

void StreamWriter::write(const ContextRecord& r) {
  write(FrameType::kContextRecord, bytes_of(r));
}
void StreamWriter::write(const PhysEvent& e) {
  write(FrameType::kPhysEvent, bytes_of(e));
}
void StreamWriter::write(const LostEvents& l) {
  write(FrameType::kLostEvents, bytes_of(l));
}

void StreamWriter::write(const BackendProcess& b) {
  write(FrameType::kBackendProcess, bytes_of(b));
}
void StreamWriter::write(const VdiskDeclaration& d) {
  const auto payload = encode_vdisk_declaration(d);
  write(FrameType::kVdiskDeclaration, payload);
}

void StreamWriter::flush(bool durable) {
  if (std::fflush(file_) != 0) throw system_error("cannot write " + path_.string());
  if (durable && ::fsync(fileno(file_)) != 0) throw system_error("cannot sync " + path_.string());
}

StreamReader::StreamReader(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open stream file " + path.string());
  std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  data_.resize(raw.size());
  if (!raw.empty()) std::memcpy(data_.data(), raw.data(), raw.size());
  parser_.emplace(std::span<const std::byte>(data_));
}

}  // namespace v2p

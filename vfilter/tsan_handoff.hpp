// ThreadSanitizer cannot see the happens-before edge the kernel provides between the thread that
// submits an SQE and the thread that reaps its CQE. These two calls declare it, so a TSan build
// checks everything else; in other builds they compile to nothing.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define V2P_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define V2P_TSAN 1
#endif
#endif

#ifdef V2P_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace v2p::vfilter {

// Call with the SQE's user data just before submitting it.
inline void handoff_release([[maybe_unused]] void* user_data) noexcept {
#ifdef V2P_TSAN
  __tsan_release(user_data);
#endif
}

// Call with the CQE's user data right after reaping it.
inline void handoff_acquire([[maybe_unused]] void* user_data) noexcept {
#ifdef V2P_TSAN
  __tsan_acquire(user_data);
#endif
}

}  // namespace v2p::vfilter

// Internal to sampling.cc and llm.cc (and tests/llm/sampling_tool.cc): numbers in messages written as
// Python's repr writes them; which vector loops the sampler runs.
#pragma once

#include <string>

namespace dlavm {
namespace detail {

// v as Python's repr writes the usual values (0.5, 2.0, 1e-05, nan, inf), so the C++ refusals read like
// the Python Generator's.
std::string py_number(double v);

// The sampler's vector loops: "avx2" (x86-64 CPUs that have it) or "portable" (two doubles at a time).
// Both give the same bits; sampling_portable_vectors(true) makes every thread run the portable ones, so
// that a test can compare the two on one machine.
const char* sampling_vectors();
void sampling_portable_vectors(bool on);

}  // namespace detail
}  // namespace dlavm

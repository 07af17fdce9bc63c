// A full pass over every weight, looking for NaN and Inf. Opt-in at load
// (`verify: true`): it touches every page of the mapping, so it costs a read
// of the whole checkpoint, and it catches a corrupt download that still has
// a valid header.
#pragma once

#include "model/checkpoint.h"

namespace rex {

// Errors: kCorruptFile "tensor 'X' in FILE holds a non-finite value (nan) at element N".
Status verify_weights_finite(const Checkpoint& checkpoint);

}  // namespace rex

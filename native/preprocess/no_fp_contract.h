// Include first in a translation unit that must reproduce another program's
// floating-point results bit for bit (Pillow's taps, numpy's normalisation):
// it forbids fusing a*b+c into an FMA for the rest of the file, since an FMA
// rounds once where the reference rounds twice.
#pragma once

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

// The two LZ4 entry points that Verilator's FST writer calls, for machines without the lz4 headers.
//
// LZ4_compress_default writes a valid LZ4 block made of literals only (no matches): every LZ4
// decoder (GTKWave, Surfer, fst2vcd) reads it; the waveform is larger than a compressed one, which
// does not matter for a failing test's trace. Block format: a token whose high nibble is the literal
// length (15 = more length bytes follow: 255s, then the rest), then the literals; the last sequence
// of a block has no match part. See the LZ4 block format description (lz4/doc/lz4_Block_format.md).
#pragma once
#include <string.h>

static inline int LZ4_compressBound(int n) { return n < 0 ? 0 : n + n / 255 + 16; }

static inline int LZ4_compress_default(const char* src, char* dst, int n, int cap) {
    if (n < 0 || cap < LZ4_compressBound(n)) return 0;
    char* o = dst;
    if (n >= 15) {
        *o++ = (char)0xF0;
        int rest = n - 15;
        while (rest >= 255) { *o++ = (char)0xFF; rest -= 255; }
        *o++ = (char)rest;
    } else {
        *o++ = (char)(n << 4);
    }
    memcpy(o, src, (size_t)n);
    return (int)(o - dst) + n;
}

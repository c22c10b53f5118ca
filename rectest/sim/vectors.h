/* Vectors of W = 16 floats or int32 (GCC / Clang vector extensions: one AVX-512 register, or two AVX2 ones) and
 * their unaligned loads, stores and lane-wise selections, shared by mmr.c and rho.c. A header next to the kernels:
 * rectest/sim/native.py hashes it with each source, so a change rebuilds them. */
#ifndef RECTEST_VECTORS_H
#define RECTEST_VECTORS_H

#include <stdint.h>
#include <string.h>

#define W 16 /* floats a vector */

typedef float vf __attribute__((vector_size(4 * W)));
typedef int32_t vi __attribute__((vector_size(4 * W)));

static inline vf load(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* a where m is set (all bits), else b */
static inline vf pick_f(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }

static inline vi pick_i(vi m, vi a, vi b) { return (a & m) | (b & ~m); }

#endif

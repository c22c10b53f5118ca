/* One synchronous step of the dual-influence dynamics (spec section 2) for float32 replicas on the CPU, under the
 * audience rule with impact functions sign or identity: the few passes over the (R, m, d) users and (R, n, d)
 * creators that torch makes in about twenty small operations (each with its own pass and its own temporary).
 *
 * 1. move_users: per user j shown creator i, s = <u_j, v_i>, then u_j' = P(u_j + (eta_u f(s)) v_i), with the
 *    operations in torch's order (the product (eta_u f(s)) v_i, its sum with u_j, the quotient by max(|x|, 1e-30));
 *    only the sums over the d coordinates (s and |x|) run in another order than torch's reductions.
 * 2. creator_sums: per creator, the sum of g(s) u_j over its audience and the audience's size, accumulated in float
 *    in user order, as torch's index_add_ accumulates them (bit for bit).
 * 3. move_creators: per creator with an audience, v_i' = P((eta_c sum) / |S_i| + v_i), again in torch's order; a
 *    creator shown to nobody is copied bit for bit.
 * Replicas are independent; they are split over `threads` OpenMP threads (torch's own runtime when it is loaded).
 * Compiled and loaded by rectest/sim/update.py. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Products and sums stay apart, as torch's separate operations round them (no fused multiply-adds). */
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define TINY 1e-30f /* rectest.sim.scoring._TINY */

enum { IDENTITY = 0, SIGN = 1 };

/* max(x, TINY) as torch's clamp_min: a NaN stays NaN. */
static inline float at_least_tiny(float x) { return x < TINY ? TINY : x; }

/* The smaller of low and |x|, a NaN kept once met (as torch's amin). */
static inline float least_abs(float low, float x) {
    x = fabsf(x);
    return (x != x || x < low) ? x : low;
}

static inline float impact(float s, int kind) { return kind == SIGN ? (float)((s > 0.0f) - (s < 0.0f)) : s; }

#ifdef __AVX512F__
#include <immintrin.h>

/* Coordinates q .. q + 15 of a vector of d: the lanes left. */
static inline __mmask16 lanes(int64_t left) { return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1); }

/* x / max(|x|, TINY) in place, 16 coordinates a register (the square norm summed lane-wise, then across). */
static inline void project(float *x, int64_t d) {
    __m512 sq = _mm512_setzero_ps();
    for (int64_t q = 0; q < d; q += 16) {
        __m512 y = _mm512_maskz_loadu_ps(lanes(d - q), x + q);
        sq = _mm512_add_ps(sq, _mm512_mul_ps(y, y));
    }
    float norm = sqrtf(_mm512_reduce_add_ps(sq));
    __m512 by = _mm512_set1_ps(at_least_tiny(norm));
    for (int64_t q = 0; q < d; q += 16) {
        __mmask16 in = lanes(d - q);
        _mm512_mask_storeu_ps(x + q, in, _mm512_div_ps(_mm512_maskz_loadu_ps(in, x + q), by));
    }
}

static inline float dot(const float *u, const float *v, int64_t d) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t q = 0; q < d; q += 16) {
        __mmask16 in = lanes(d - q);
        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_maskz_loadu_ps(in, u + q), _mm512_maskz_loadu_ps(in, v + q)));
    }
    return _mm512_reduce_add_ps(acc);
}

/* x = P(a v + u) (the product rounded, then the sum; up to 16 coordinates in a register). */
static inline void step_to(float *x, float a, const float *v, const float *u, int64_t d) {
    __m512 av = _mm512_set1_ps(a);
    if (d <= 16) {
        __mmask16 in = lanes(d);
        __m512 y = _mm512_add_ps(_mm512_mul_ps(av, _mm512_maskz_loadu_ps(in, v)), _mm512_maskz_loadu_ps(in, u));
        float norm = sqrtf(_mm512_reduce_add_ps(_mm512_mul_ps(y, y)));
        _mm512_mask_storeu_ps(x, in, _mm512_div_ps(y, _mm512_set1_ps(at_least_tiny(norm))));
        return;
    }
    for (int64_t q = 0; q < d; q += 16) {
        __mmask16 in = lanes(d - q);
        __m512 y = _mm512_add_ps(_mm512_mul_ps(av, _mm512_maskz_loadu_ps(in, v + q)), _mm512_maskz_loadu_ps(in, u + q));
        _mm512_mask_storeu_ps(x + q, in, y);
    }
    project(x, d);
}

/* row += w u (the product rounded, then the sum). */
static inline void add_scaled(float *row, float w, const float *u, int64_t d) {
    __m512 wv = _mm512_set1_ps(w);
    for (int64_t q = 0; q < d; q += 16) {
        __mmask16 in = lanes(d - q);
        __m512 y = _mm512_add_ps(_mm512_maskz_loadu_ps(in, row + q), _mm512_mul_ps(wv, _mm512_maskz_loadu_ps(in, u + q)));
        _mm512_mask_storeu_ps(row + q, in, y);
    }
}

/* x = P((eta a) / count + v) (up to 16 coordinates in a register). */
static inline void moved_to(float *x, float eta, const float *a, float count, const float *v, int64_t d) {
    __m512 ev = _mm512_set1_ps(eta), cv = _mm512_set1_ps(count);
    if (d <= 16) {
        __mmask16 in = lanes(d);
        __m512 y = _mm512_div_ps(_mm512_mul_ps(ev, _mm512_maskz_loadu_ps(in, a)), cv);
        y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(in, v));
        float norm = sqrtf(_mm512_reduce_add_ps(_mm512_mul_ps(y, y)));
        _mm512_mask_storeu_ps(x, in, _mm512_div_ps(y, _mm512_set1_ps(at_least_tiny(norm))));
        return;
    }
    for (int64_t q = 0; q < d; q += 16) {
        __mmask16 in = lanes(d - q);
        __m512 y = _mm512_div_ps(_mm512_mul_ps(ev, _mm512_maskz_loadu_ps(in, a + q)), cv);
        _mm512_mask_storeu_ps(x + q, in, _mm512_add_ps(y, _mm512_maskz_loadu_ps(in, v + q)));
    }
    project(x, d);
}
#else
static inline void project(float *x, int64_t d) {
    float sq = 0.0f;
    for (int64_t q = 0; q < d; ++q) sq += x[q] * x[q];
    float norm = sqrtf(sq);
    norm = at_least_tiny(norm);
    for (int64_t q = 0; q < d; ++q) x[q] = x[q] / norm;
}

static inline void add_scaled(float *row, float w, const float *u, int64_t d) {
    for (int64_t q = 0; q < d; ++q) row[q] += w * u[q];
}

static inline void moved_to(float *x, float eta, const float *a, float count, const float *v, int64_t d) {
    for (int64_t q = 0; q < d; ++q) x[q] = (eta * a[q]) / count + v[q];
    project(x, d);
}

static inline float dot(const float *u, const float *v, int64_t d) {
    float acc = 0.0f;
    for (int64_t q = 0; q < d; ++q) acc += u[q] * v[q];
    return acc;
}

static inline void step_to(float *x, float a, const float *v, const float *u, int64_t d) {
    for (int64_t q = 0; q < d; ++q) x[q] = a * v[q] + u[q];
    project(x, d);
}
#endif

/* users, out: R x m x d; creators: R x n x d; chosen: R x m indices in [0, n); eta: R rates; s: out, R x m. */
void move_users(int64_t R, int64_t m, int64_t n, int64_t d, const float *users, const float *creators,
                const int64_t *chosen, const float *eta, int f, float *out, float *s, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < R; ++r) {
        for (int64_t j = 0; j < m; ++j) {
            const float *u = users + (r * m + j) * d, *v = creators + (r * n + chosen[r * m + j]) * d;
            float *x = out + (r * m + j) * d, sj = dot(u, v, d);
            s[r * m + j] = sj;
            step_to(x, eta[r] * impact(sj, f), v, u, d);
        }
    }
}

/* acc: out, R x n x (d + 1): per creator the sum of g(s) u_j over its audience and, last, the audience's size. */
void creator_sums(int64_t R, int64_t m, int64_t n, int64_t d, const float *users, const float *s,
                  const int64_t *chosen, int g, float *acc, int threads) {
#pragma omp parallel num_threads(threads)
    {
#ifdef __AVX512F__
        /* d <= 16: each creator's sums in a whole aligned register-sized row, its count apart, so that a user's
         * load sees the last user's store of the same creator (a masked store of d + 1 floats stalls it); without
         * the buffer (out of memory), the rows of acc as they are. */
        size_t bytes = ((size_t)(n * 16 + n) * sizeof(float) + 63) / 64 * 64; /* (a multiple of the alignment) */
        float *pad = d <= 16 ? aligned_alloc(64, bytes) : NULL;
#endif
#pragma omp for schedule(static)
        for (int64_t r = 0; r < R; ++r) {
            float *a = acc + r * n * (d + 1);
#ifdef __AVX512F__
            if (pad) {
                float *count = pad + n * 16;
                memset(pad, 0, (size_t)(n * 16 + n) * sizeof *pad);
                for (int64_t j = 0; j < m; ++j) {
                    int64_t i = chosen[r * m + j];
                    __m512 term = _mm512_mul_ps(_mm512_set1_ps(impact(s[r * m + j], g)),
                                                _mm512_maskz_loadu_ps(lanes(d), users + (r * m + j) * d));
                    _mm512_store_ps(pad + i * 16, _mm512_add_ps(_mm512_load_ps(pad + i * 16), term));
                    count[i] += 1.0f;
                }
                for (int64_t i = 0; i < n; ++i) {
                    _mm512_mask_storeu_ps(a + i * (d + 1), lanes(d), _mm512_load_ps(pad + i * 16));
                    a[i * (d + 1) + d] = count[i];
                }
                continue;
            }
#endif
            memset(a, 0, (size_t)(n * (d + 1)) * sizeof *a);
            for (int64_t j = 0; j < m; ++j) {
                const float *u = users + (r * m + j) * d;
                float *row = a + chosen[r * m + j] * (d + 1);
                add_scaled(row, impact(s[r * m + j], g), u, d);
                row[d] += 1.0f;
            }
        }
#ifdef __AVX512F__
        free(pad);
#endif
    }
}

/* creators, out: R x n x d; acc: R x n x (d + 1) as creator_sums writes it; eta: R rates. */
void move_creators(int64_t R, int64_t n, int64_t d, const float *creators, const float *acc, const float *eta,
                   float *out, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < R; ++r) {
        for (int64_t i = 0; i < n; ++i) {
            const float *v = creators + (r * n + i) * d, *a = acc + (r * n + i) * (d + 1);
            float *x = out + (r * n + i) * d, count = a[d];
            if (!(count > 0.0f)) {
                memcpy(x, v, (size_t)d * sizeof *x);
                continue;
            }
            moved_to(x, eta[r], a, count, v, d);
        }
    }
}

/* The polarization check's cheap necessary condition (rectest.sim.measures.is_polarized): per replica, the least
 * |<x, v_0>| over its users (near_u) and over its creators (near_c), v_0 its first creator. */
void anchor_cosines(int64_t R, int64_t m, int64_t n, int64_t d, const float *users, const float *creators,
                    float *near_u, float *near_c, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < R; ++r) {
        const float *v0 = creators + r * n * d;
        float low = INFINITY;
        for (int64_t j = 0; j < m; ++j) low = least_abs(low, dot(users + (r * m + j) * d, v0, d));
        near_u[r] = low;
        low = INFINITY;
        for (int64_t i = 0; i < n; ++i) low = least_abs(low, dot(creators + (r * n + i) * d, v0, d));
        near_c[r] = low;
    }
}

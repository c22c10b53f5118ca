/* The diversity-aware fixed point (rho), one user's row at a time in the cache.
 *
 * The iteration is the torch path's (BoundPolicy._diversity_aware): from p, the plain softmax over the eligible
 * creators (its zeros stay zeros),
 *   vbar = sum_i p_i v_i,  T(p) = softmax(beta s - 2 beta rho V vbar) over the eligible,  p <- p + a (T(p) - p)
 * with a = 1 / (1 + 2 beta rho), until no probability moves by tol (that last step applied) or iters steps.
 * A row's p, its logits and the replica's transposed creators (d x n) stay in L1 / L2 across the iterations:
 * each iteration is three passes over the row (the logits and their maximum; the exps and their sum; the new p,
 * its largest move and the next vbar), where torch makes about eight passes over chunks in memory.
 * The floats differ from torch's by rounding: the sums run in another order, and the exp is this file's (Cephes'
 * polynomial, within 2 ulp), so the probabilities agree with the torch path to a few 1e-7, not bit for bit.
 * Compiled and loaded by rectest/sim/rho.py. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vectors.h" /* W = 16 floats a vector: vf, vi, load, store, pick_f, pick_i */

static inline float hsum(vf v) {
    float s = 0.0f;
    for (int l = 0; l < W; ++l) s += v[l];
    return s;
}

static inline float hmax(vf v) {
    float m = v[0];
    for (int l = 1; l < W; ++l) m = v[l] > m ? v[l] : m;
    return m;
}

/* exp(x) for x <= 0 (Cephes' expf: 2^n times a degree-6 polynomial of the remainder), 0 below -87.3 and for
 * -inf. */
static inline vf exp_neg(vf x) {
    const float lo = -87.33654475f;
    vi under = x < lo;
    x = pick_f(under, (vf){0} + lo, x);
    vf fx = x * 1.44269504088896341f + 0.5f;
    vi n = __builtin_convertvector(fx, vi); /* toward zero */
    vf t = __builtin_convertvector(n, vf);
    n -= (vi)(t > fx) & 1; /* floor */
    t = __builtin_convertvector(n, vf);
    x -= t * 0.693359375f;
    x -= t * -2.12194440e-4f;
    vf z = x * x;
    vf y = (vf){0} + 1.9875691500e-4f;
    y = y * x + 1.3981999507e-3f;
    y = y * x + 8.3334519073e-3f;
    y = y * x + 4.1665795894e-2f;
    y = y * x + 1.6666665459e-1f;
    y = y * x + 5.0000001201e-1f;
    y = y * z + x + 1.0f;
    vi bits = (n + 127) << 23;
    y *= (vf)bits;
    return pick_f(under, (vf){0}, y);
}

#define BLOCK 8 /* users iterated together, sharing each load of the creators */

/* Per-thread buffers, BLOCK rows of np = n rounded up to W each: p, beta s (-inf off the eligible set and in the
 * padding), and the logits / exps. */
typedef struct {
    float *p, *base, *e;
} buffers_t;

/* vbar of each of the B rows of p (B x np), from vt (d x np): vbar[b d + k] = sum_i p_bi vt_ki. */
static inline void mean_creators(const float *p, int64_t np, int64_t d, int64_t B, const float *vt, float *vbar) {
    for (int64_t k = 0; k < d; ++k) {
        vf acc[BLOCK];
        for (int64_t b = 0; b < B; ++b) acc[b] = (vf){0};
        for (int64_t c0 = 0; c0 < np; c0 += W) {
            vf col = load(vt + k * np + c0);
#pragma GCC unroll 8
            for (int64_t b = 0; b < B; ++b) acc[b] += load(p + b * np + c0) * col;
        }
        for (int64_t b = 0; b < B; ++b) vbar[b * d + k] = hsum(acc[b]);
    }
}

/* The logits beta s - 2 beta rho <v_i, vbar_b> of the B rows into e (B x np), each coordinate vector of a tile
 * loaded once for the B rows; each row's maximum into top. */
static inline void logits(const float *base, int64_t np, int64_t d, int64_t B, const float *vt, const float *u,
                          float *e, float *top) {
    vf mx[BLOCK];
    for (int64_t b = 0; b < B; ++b) mx[b] = (vf){0} - INFINITY;
    for (int64_t c0 = 0; c0 < np; c0 += W) {
        vf l[BLOCK];
        for (int64_t b = 0; b < B; ++b) l[b] = load(base + b * np + c0);
        for (int64_t k = 0; k < d; ++k) {
            vf col = load(vt + k * np + c0);
#pragma GCC unroll 8
            for (int64_t b = 0; b < B; ++b) l[b] += col * u[b * d + k];
        }
        for (int64_t b = 0; b < B; ++b) {
            store(e + b * np + c0, l[b]);
            mx[b] = pick_f(l[b] > mx[b], l[b], mx[b]);
        }
    }
    for (int64_t b = 0; b < B; ++b) top[b] = hmax(mx[b]);
}

/* Iterates B rows of p (po[b]: n floats, normalised, in place; so[b]: their scores) together; moving: the rows
 * to iterate, cleared as each converges; vt: the replica's creators, d x np, zero padded. */
static void fixed_points(float *const *po, const float *const *so, int64_t n, int64_t np, int64_t d, int64_t B,
                         const float *vt, float beta, float rho, int64_t iters, float tol, uint8_t *moving,
                         const buffers_t *buf) {
    float *p = buf->p, *base = buf->base, *e = buf->e;
    const float a = 1.0f / (1.0f + 2.0f * beta * rho), coef = -2.0f * beta * rho;
    float vbar[BLOCK * d], top[BLOCK];
    int64_t left = 0;
    for (int64_t b = 0; b < B; ++b) {
        left += moving[b] != 0;
        for (int64_t i = 0; i < np; ++i) {
            float x = i < n ? po[b][i] : 0.0f;
            p[b * np + i] = x;
            base[b * np + i] = i < n && x > 0.0f ? beta * so[b][i] : -INFINITY;
        }
    }
    for (int64_t it = 0; it < iters && left > 0; ++it) {
        if (B == BLOCK) /* 1. vbar, then -2 beta rho vbar (a constant count: the sums stay in registers) */
            mean_creators(p, np, d, BLOCK, vt, vbar);
        else
            mean_creators(p, np, d, B, vt, vbar);
        for (int64_t j = 0; j < B * d; ++j) vbar[j] *= coef;
        if (B == BLOCK) /* 2. the logits */
            logits(base, np, d, BLOCK, vt, vbar, e, top);
        else
            logits(base, np, d, B, vt, vbar, e, top);
        for (int64_t b = 0; b < B; ++b) {
            if (!moving[b]) continue;
            float *eb = e + b * np, *pb = p + b * np;
            vf sum = {0}; /* 3. the exps and their sum */
            for (int64_t c0 = 0; c0 < np; c0 += W) {
                vf x = exp_neg(load(eb + c0) - top[b]);
                store(eb + c0, x);
                sum += x;
            }
            float inv = 1.0f / hsum(sum);
            vf change = {0}; /* 4. p moves a of the way to the target; its largest move */
            for (int64_t c0 = 0; c0 < np; c0 += W) {
                vf pv = load(pb + c0);
                vf diff = load(eb + c0) * inv - pv;
                vf mag = pick_f(diff < 0.0f, -diff, diff);
                change = pick_f(mag > change, mag, change);
                store(pb + c0, pv + a * diff);
            }
            if (!(hmax(change) >= tol)) {
                moving[b] = 0;
                --left;
            }
        }
    }
    for (int64_t b = 0; b < B; ++b) memcpy(po[b], p + b * np, (size_t)n * sizeof(float));
}

/* rows = R * c rows of p (n each, normalised, iterated in place) and of scores; row r belongs to replica r / c,
 * whose creators are vt + (r / c) d n (transposed: d x n); beta and rho per replica; moving: rows flags (0: the
 * row keeps its p: a uniform fallback, rho = 0, or a non-finite row). Returns 0, or -1 if out of memory. */
int rho_rows(int64_t rows, int64_t c, int64_t n, int64_t d, float *p, const float *scores, const float *vt,
             const float *beta, const float *rho, const uint8_t *moving, int64_t iters, float tol, int threads) {
    int failed = 0;
    int64_t np = (n + W - 1) / W * W;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *t = malloc((size_t)(d * np) * sizeof(float));
        buffers_t buf = {malloc((size_t)(BLOCK * np) * sizeof(float)), malloc((size_t)(BLOCK * np) * sizeof(float)),
                         malloc((size_t)(BLOCK * np) * sizeof(float))};
        uint8_t *flags = malloc(BLOCK);
        int ok = t && buf.p && buf.base && buf.e && flags;
        failed = !ok;
        int64_t team = omp_get_num_threads(), me = omp_get_thread_num();
        int64_t first = rows * me / team, last = rows * (me + 1) / team, loaded = -1;
        for (int64_t r = first; ok && r < last;) { /* blocks of moving rows of one replica */
            int64_t replica = r / c, end = (replica + 1) * c < last ? (replica + 1) * c : last, B = 0;
            float *po[BLOCK];
            const float *so[BLOCK];
            for (; r < end && B < BLOCK; ++r) {
                if (!moving[r]) continue;
                po[B] = p + r * n;
                so[B] = scores + r * n;
                flags[B++] = 1;
            }
            if (B == 0) continue;
            if (replica != loaded) { /* the replica's creators, padded to np */
                for (int64_t k = 0; k < d; ++k) {
                    memcpy(t + k * np, vt + (replica * d + k) * n, (size_t)n * sizeof(float));
                    for (int64_t i = n; i < np; ++i) t[k * np + i] = 0.0f;
                }
                loaded = replica;
            }
            fixed_points(po, so, n, np, d, B, t, beta[replica], rho[replica], iters, tol, flags, &buf);
        }
        free(t);
        free(buf.p);
        free(buf.base);
        free(buf.e);
        free(flags);
    }
    return failed ? -1 : 0;
}

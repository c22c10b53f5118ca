/* MMR re-ranking lists: the greedy list of each user, several users of one replica at a time.
 *
 * The greedy list of a user picks first the creator of largest score s_i (the first of equal scores), then, k - 1
 * times, the creator of largest value lambda s_i - (1 - lambda) max_{picked l} <v_i, v_l> among those not picked
 * (the first of equal values), as the torch path does. After each pick, one pass over the replica's creators, 16
 * at a time, computes every creator's similarity to the newest pick (its d coordinates stored transposed, so 16
 * creators' j-th coordinates are one vector), updates the running maximum and the value, and keeps the first
 * largest value per lane. The users of a block (up to BLOCK of one replica) share each tile of 16 creators: each
 * coordinate vector is loaded once for all of them and their sums run side by side. No (users x creators) temporaries: the torch path's k matmuls and passes over every score
 * become one pass a pick over n d coordinates, in cache.
 * The values are float operations as torch's (lambda * s, (1 - lambda) * maxsim, their difference) but may be
 * fused, and the similarities are float sums of products in another order than torch's matmul: the lists agree
 * with it unless two values tie within a rounding.
 * Compiled and loaded by rectest/sim/mmr.py. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 8
#include "vectors.h" /* W = 16 floats a vector: vf, vi, load, store, pick_f, pick_i */

/* acc[b] = the similarities <v_c, w_b> of the W creators c0.. to each of the B newest picks w_b (d coordinates
 * each, in w); vt is d x np (transposed creators). Each coordinate vector is loaded once for the B users, whose
 * sums run side by side (each user's sum is the same float operations in the same order as one user's alone). */
static inline void sim_tiles(const float *vt, int64_t np, int64_t c0, const float *w, int64_t d, int64_t B,
                             vf *acc) {
    for (int64_t b = 0; b < B; ++b) acc[b] = (vf){0};
    for (int64_t j = 0; j < d; ++j) {
        vf col = load(vt + j * np + c0);
#pragma GCC unroll 8
        for (int64_t b = 0; b < B; ++b) acc[b] += col * w[b * d + j];
    }
}

/* The first largest of the lanes' values (the smallest index among equal ones): its index, INT32_MAX if every
 * value is NaN or -inf; its value in *top. */
static int32_t first_of_lanes(vf best, vi at, float *top) {
    float t = -INFINITY;
    int32_t where = INT32_MAX;
    for (int l = 0; l < W; ++l) {
        if (best[l] > t || (best[l] == t && at[l] < where)) {
            t = best[l];
            where = at[l];
        }
    }
    *top = t;
    return where;
}

/* The index of the first largest of n values (0 if x[0] is NaN or every value is NaN or -inf, as a scalar loop
 * `best = x[i] > x[best] ? i : best` gives): lanes of W values, then the tail. Once per row. */
static int64_t first_max(const float *x, int64_t n) {
    if (isnan(x[0])) return 0;
    vf best;
    vi at, lane;
    for (int l = 0; l < W; ++l) {
        best[l] = -INFINITY;
        at[l] = INT32_MAX;
        lane[l] = l;
    }
    int64_t full = n / W * W;
    for (int64_t c0 = 0; c0 < full; c0 += W) {
        vf v = load(x + c0);
        vi up = v > best;
        best = pick_f(up, v, best);
        at = pick_i(up, lane + (int32_t)c0, at);
    }
    float top;
    int64_t where = first_of_lanes(best, at, &top);
    for (int64_t i = full; i < n; ++i) {
        if (x[i] > top) {
            top = x[i];
            where = i;
        }
    }
    return where == INT32_MAX ? 0 : where;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Per-thread buffers for rows of np = n rounded up to W: the replica's creators vt (d x np, zero padded), and per
 * block row the scores s, the running maxima m, the exclusions x (0, or -inf for picked and padding) and the
 * newest pick's d coordinates w. */
typedef struct {
    float *vt, *s, *m, *x, *w;
} buffers_t;

/* One pass of a pick over the replica's creators for B users, 16 creators a tile: each tile's similarities to the
 * users' newest picks (buf->w) update their running maxima (first: become them) and values, and the lanes' first
 * largest values best and their indices at. */
static inline void pick_pass(const buffers_t *buf, int64_t np, int64_t d, int64_t B, int first, float lam,
                             float keep, vf *best, vi *at) {
    vi lane;
    for (int l = 0; l < W; ++l) lane[l] = l;
    for (int64_t c0 = 0; c0 < np; c0 += W) {
        vi idx = lane + (int32_t)c0;
        vf sims[BLOCK];
        sim_tiles(buf->vt, np, c0, buf->w, d, B, sims);
#pragma GCC unroll 8
        for (int64_t b = 0; b < B; ++b) {
            float *mp = buf->m + b * np + c0;
            vf m = first ? sims[b] : load(mp);
            m = pick_f(sims[b] > m, sims[b], m);
            store(mp, m);
            vf val = lam * load(buf->s + b * np + c0) - keep * m + load(buf->x + b * np + c0);
            vi up = val > best[b];
            best[b] = pick_f(up, val, best[b]);
            at[b] = pick_i(up, idx, at[b]);
        }
    }
}

/* B <= BLOCK rows of one replica: scores (B x n), lists of k written to out (B x kmax, in index order, padded with
 * the last); the replica's creators already in buf->vt. */
static void mmr_block(const float *scores, int64_t n, int64_t np, int64_t d, int64_t B, int64_t k, float lam,
                      int64_t *out, int64_t kmax, const buffers_t *buf) {
    const float keep = 1.0f - lam; /* (1 - lambda), rounded as torch's 1 - mmr */
    for (int64_t b = 0; b < B; ++b) {
        float *s = buf->s + b * np, *x = buf->x + b * np;
        memcpy(s, scores + b * n, (size_t)n * sizeof *s);
        for (int64_t i = 0; i < np; ++i) x[i] = i < n ? 0.0f : -INFINITY;
        for (int64_t i = n; i < np; ++i) s[i] = 0.0f;
        out[b * kmax] = first_max(s, n);
        x[out[b * kmax]] = -INFINITY;
    }
    for (int64_t t = 1; t < k; ++t) {
        vf best[BLOCK];
        vi at[BLOCK];
        for (int64_t b = 0; b < B; ++b) {
            int64_t p = out[b * kmax + t - 1];
            for (int64_t j = 0; j < d; ++j) buf->w[b * d + j] = buf->vt[j * np + p];
            for (int l = 0; l < W; ++l) {
                best[b][l] = -INFINITY;
                at[b][l] = INT32_MAX;
            }
        }
        if (B == BLOCK) /* (a constant count: the users' sums and lanes can stay in registers) */
            pick_pass(buf, np, d, BLOCK, t == 1, lam, keep, best, at);
        else
            pick_pass(buf, np, d, B, t == 1, lam, keep, best, at);
        for (int64_t b = 0; b < B; ++b) {
            float top;
            int32_t where = first_of_lanes(best[b], at[b], &top);
            if (where == INT32_MAX) { /* every value NaN or -inf: the first creator not picked */
                where = 0;
                while (buf->x[b * np + where] != 0.0f) ++where;
            }
            out[b * kmax + t] = where;
            buf->x[b * np + where] = -INFINITY;
        }
    }
    for (int64_t b = 0; b < B; ++b) {
        int64_t *o = out + b * kmax;
        qsort(o, (size_t)k, sizeof *o, cmp_i64);
        for (int64_t t = k; t < kmax; ++t) o[t] = o[k - 1];
    }
}

/* rows = R * c rows of scores (n each); row r belongs to replica r / c, whose creators are vt + (r / c) d n
 * (transposed: d x n); k and lam per replica; out rows x kmax. Returns 0, or -1 if out of memory. */
int mmr_rows(int64_t rows, int64_t c, int64_t n, int64_t d, const float *scores, const float *vt, const int64_t *k,
             const float *lam, int64_t kmax, int64_t *out, int threads) {
    int failed = 0;
    int64_t np = (n + W - 1) / W * W;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        int64_t team = omp_get_num_threads(), me = omp_get_thread_num();
        int64_t a = rows * me / team, b = rows * (me + 1) / team;
        buffers_t buf = {malloc((size_t)(d * np) * sizeof(float)), malloc((size_t)(BLOCK * np) * sizeof(float)),
                         malloc((size_t)(BLOCK * np) * sizeof(float)), malloc((size_t)(BLOCK * np) * sizeof(float)),
                         malloc((size_t)(BLOCK * d) * sizeof(float))};
        if (!buf.vt || !buf.s || !buf.m || !buf.x || !buf.w) {
            failed = 1;
        } else {
            int64_t loaded = -1;
            for (int64_t r = a; r < b;) { /* blocks of rows of one replica */
                int64_t replica = r / c, end = (replica + 1) * c;
                int64_t B = end - r < BLOCK ? end - r : BLOCK;
                B = b - r < B ? b - r : B;
                if (replica != loaded) { /* the replica's creators, padded to np */
                    for (int64_t j = 0; j < d; ++j) {
                        memcpy(buf.vt + j * np, vt + (replica * d + j) * n, (size_t)n * sizeof(float));
                        for (int64_t i = n; i < np; ++i) buf.vt[j * np + i] = 0.0f;
                    }
                    loaded = replica;
                }
                mmr_block(scores + r * n, n, np, d, B, k[replica], lam[replica], out + r * kmax, kmax, &buf);
                r += B;
            }
        }
        free(buf.vt);
        free(buf.s);
        free(buf.m);
        free(buf.x);
        free(buf.w);
    }
    return failed ? -1 : 0;
}

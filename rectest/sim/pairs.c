/* The sums over all pairs of unit vectors that CD and TP need (spec section 5), from one chunk of their Gram
 * matrix: one pass over the chunk instead of torch's separate abs, sqrt, clamp, mask and sum passes.
 *
 * The chunk holds rows a..a+c-1 of a block's Gram matrix and its columns a..n-1, so the pairs (i, k) with
 * k > i lie right of its diagonal. For each row i the kernel sums, over those columns,
 *   |<v_i, v_k>|,  sqrt(max(2 - 2 <v_i, v_k>, 0)) (the distance ||v_i - v_k||),  and [<v_i, v_k> >= cosine],
 * and keeps |<v_i, v_i>|. A row's sums are accumulated in 16 lanes fixed by the column's distance from the
 * diagonal, so they do not depend on where the chunk starts: the totals are the same for every chunk size.
 * Given a union-find forest (one per block), the pairs with cosine >= cosine are also joined in it, so that once
 * every chunk has been seen its roots are the connected components of the cluster graph.
 * Compiled and loaded by rectest/sim/native.py. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define LANES 16

static void pair_row(const float *x, int64_t len, float cosine, double *dist, double *abs_sum, int64_t *linked) {
    float d[LANES] = {0}, a[LANES] = {0};
    int32_t l[LANES] = {0};
    int64_t j = 0;
    for (; j + LANES <= len; j += LANES) {
        for (int q = 0; q < LANES; ++q) {
            float g = x[j + q], t = 2.0f - 2.0f * g;
            a[q] += fabsf(g);
            d[q] += sqrtf(t > 0.0f ? t : 0.0f);
            l[q] += g >= cosine;
        }
    }
    for (int q = 0; j + q < len; ++q) {
        float g = x[j + q], t = 2.0f - 2.0f * g;
        a[q] += fabsf(g);
        d[q] += sqrtf(t > 0.0f ? t : 0.0f);
        l[q] += g >= cosine;
    }
    double sd = 0.0, sa = 0.0;
    int64_t sl = 0;
    for (int q = 0; q < LANES; ++q) {
        sd += d[q];
        sa += a[q];
        sl += l[q];
    }
    *dist = sd;
    *abs_sum = sa;
    *linked = sl;
}

/* The root of x's tree, halving the path on the way. */
static int32_t root(int32_t *parent, int32_t x) {
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

/* Joins row i (node a + i) with every node a + j, j > i, of the row with row[j] >= cosine; the smaller root
 * becomes the parent, so every root is its component's smallest node. */
static void join_row(const float *row, int64_t i, int64_t w, int64_t a, float cosine, int32_t *parent) {
    int32_t ri = root(parent, (int32_t)(a + i));
    for (int64_t j = i + 1; j < w; ++j) {
        if (row[j] >= cosine) {
            int32_t rk = root(parent, (int32_t)(a + j));
            if (rk < ri) {
                parent[ri] = rk;
                ri = rk;
            } else if (rk > ri) {
                parent[rk] = ri;
            }
        }
    }
}

/* gram: blocks x c x w (w = n - a, the columns a..n-1); for block b and row i (r = b * c + i) writes
 * dist[r], abs_sum[r] and linked[r], the sums over the columns right of the diagonal (k > i), and diag[r] =
 * |gram[b, i, i]|. Rows are split over `threads` OpenMP threads (torch's own runtime when it is loaded).
 * forest: NULL, or blocks x n parents (the chunk's rows are nodes a..a+c-1, its columns a..a+w-1): the rows
 * with linked pairs are then joined in their block's forest, the blocks split over the threads. */
void pair_sums(int64_t blocks, int64_t c, int64_t w, const float *gram, float cosine, double *dist,
               double *abs_sum, double *diag, int64_t *linked, int32_t *forest, int64_t n, int64_t a,
               int threads) {
#pragma omp parallel for num_threads(threads) schedule(dynamic, 16)
    for (int64_t r = 0; r < blocks * c; ++r) {
        int64_t i = r % c;
        const float *row = gram + r * w;
        diag[r] = fabsf(row[i]);
        pair_row(row + i + 1, w - i - 1, cosine, dist + r, abs_sum + r, linked + r);
    }
    if (forest == NULL)
        return;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t b = 0; b < blocks; ++b) {
        for (int64_t i = 0; i < c; ++i) {
            int64_t r = b * c + i;
            if (linked[r])
                join_row(gram + r * w, i, w, a, cosine, forest + b * n);
        }
    }
}

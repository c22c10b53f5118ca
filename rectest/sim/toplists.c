/* The candidate-list check of rectest/sim/toplists.py for rows of float32 scores, in one pass over each row, and
 * the draw from each row's top entries (draw_rows, at the end).
 *
 * For each row: the k largest scores among its list's entries, in descending order (equal scores in list
 * order), with their creators; and the largest score outside the list (the list's entries set to -inf in the row, one
 * vectorised maximum, the entries restored: the scores are left as they came). A NaN anywhere in the row gives NaN as
 * the outside maximum, so that the caller rebuilds the row from torch.topk, as its torch path does.
 * Compiled and loaded by rectest/sim/native.py. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The largest of n floats (a vectorised pass); sets *nan if one is NaN. */
static float max_of(const float *restrict x, int64_t n, int *nan) {
    float best = -INFINITY;
    int odd = 0;
#pragma omp simd reduction(max : best) reduction(| : odd)
    for (int64_t j = 0; j < n; ++j) {
        best = x[j] > best ? x[j] : best;
        odd |= x[j] != x[j];
    }
    *nan |= odd;
    return best;
}

static int list_range(int64_t first, int64_t last, int64_t n, float *scores, const int32_t *lists, int64_t L,
                      int64_t k, float *vals, int64_t *idx, float *outside) {
    float *saved = malloc((size_t)L * sizeof *saved);
    if (!saved) return -1;
    for (int64_t r = first; r < last; ++r) {
        float *s = scores + r * n;
        const int32_t *list = lists + r * L;
        float *top = vals + r * k;
        int64_t *at = idx + r * k;
        int nan = 0;
        int64_t filled = 0;
        for (int64_t q = 0; q < L; ++q) { /* the list's top k kept sorted (the lists come nearly sorted) */
            int32_t j = list[q];
            float x = s[j];
            saved[q] = x;
            nan |= x != x;
            if (filled == k && !(x > top[k - 1])) continue;
            int64_t p = filled < k ? filled++ : k - 1;
            for (; p > 0 && top[p - 1] < x; --p) {
                top[p] = top[p - 1];
                at[p] = at[p - 1];
            }
            top[p] = x;
            at[p] = j;
        }
        for (int64_t q = 0; q < L; ++q) s[list[q]] = -INFINITY; /* the list masked out (restored below) */
        float best = max_of(s, n, &nan);
        for (int64_t q = 0; q < L; ++q) s[list[q]] = saved[q];
        outside[r] = nan ? NAN : best;
    }
    free(saved);
    return 0;
}

/* scores: rows x n; lists: rows x L distinct creators per row (int32); k <= L. Writes vals, idx: rows x k and
 * outside: rows. Rows are split over `threads` OpenMP threads (torch's own runtime when it is loaded). Returns 0,
 * or -1 if out of memory. */
int list_rows(int64_t rows, int64_t n, float *scores, const int32_t *lists, int64_t L, int64_t k,
              float *vals, int64_t *idx, float *outside, int threads) {
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        int64_t team = omp_get_num_threads(), me = omp_get_thread_num();
        int64_t a = rows * me / team, b = rows * (me + 1) / team;
        if (b > a) failed |= list_range(a, b, n, scores, lists, L, k, vals, idx, outside) != 0;
    }
    return failed ? -1 : 0;
}

/* The inverse-CDF draw from each row's top entries (rectest/sim/policies.py, draw_top_k), the operations of its
 * torch path in one pass a row: the weights past the row's k zeroed (multiplied by 0), the entries put in creator
 * order when `sorted` is 0 (the lists give them by score), the cumulative sum accumulated in double and rounded
 * to float at every entry (as torch's CPU cumsum does), the target u * total in float, and the first entry whose
 * cumulative sum exceeds it (the last if none: searchsorted(right=True) clamped).
 *
 * idx, w: rows x m creators and their exp(beta s) weights; k: rows; u: rows float uniforms. Writes out_idx,
 * out_w: rows x m (creator order, weights past k zero), total and chosen: rows; and when vals (rows x (m + 1),
 * descending) is given, kth = vals[k - 1] and tied = (vals[k - 1] == vals[k]). */
typedef struct {
    int64_t idx;
    float w;
} entry;

static int by_creator(const void *a, const void *b) {
    int64_t x = ((const entry *)a)->idx, y = ((const entry *)b)->idx;
    return (x > y) - (x < y);
}

int draw_rows(int64_t rows, int64_t m, const int64_t *idx, const float *w, const int64_t *k, const float *u,
              int sorted, const float *vals, int64_t *out_idx, float *out_w, float *total, int64_t *chosen,
              float *kth, uint8_t *tied, int threads) {
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        entry *e = malloc((size_t)m * sizeof *e);
        if (!e) failed = 1;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; ++r) {
            if (!e) continue;
            int64_t kk = k[r];
            for (int64_t q = 0; q < m; ++q) {
                e[q].idx = idx[r * m + q];
                e[q].w = w[r * m + q] * (q < kk ? 1.0f : 0.0f);
            }
            if (!sorted) {
                if (m <= 64) {
                    for (int64_t q = 1; q < m; ++q) {
                        entry x = e[q];
                        int64_t p = q;
                        for (; p > 0 && e[p - 1].idx > x.idx; --p) e[p] = e[p - 1];
                        e[p] = x;
                    }
                } else {
                    qsort(e, (size_t)m, sizeof *e, by_creator);
                }
            }
            double acc = 0.0;
            for (int64_t q = 0; q < m; ++q) {
                out_idx[r * m + q] = e[q].idx;
                out_w[r * m + q] = e[q].w;
                acc += (double)e[q].w;
            }
            float sum = (float)acc, target = u[r] * sum;
            int64_t pos = m - 1;
            acc = 0.0;
            for (int64_t q = 0; q < m; ++q) {
                acc += (double)e[q].w;
                if ((float)acc > target) {
                    pos = q;
                    break;
                }
            }
            total[r] = sum;
            chosen[r] = e[pos].idx;
            if (vals) {
                const float *v = vals + r * (m + 1);
                kth[r] = v[kk - 1];
                tied[r] = v[kk - 1] == v[kk];
            }
        }
        free(e);
    }
    return failed ? -1 : 0;
}

/* RD's and RR's per-user terms from each row's top entries (sums_rows, for a logged top-k step): row b of R x c
 * rows belongs to replica b / c; its mean recommended vector vbar = sum_t w[b, t] v[idx[b, t]] / total[b] over the
 * replica's (n, d) creators, accumulated in float in entry order; rd[b] = max(0, 1 - |vbar|^2) and rr[b] = <u_b,
 * vbar> with u_b the row's true user. The same floats as torch's per-row matmul up to the order of the sum over
 * the entries (a few units in the last place). */
static void sums_range(int64_t first, int64_t last, int64_t c, int64_t k, int64_t n, int64_t d, const float *w,
                       const int64_t *idx, const float *total, const float *users, const float *creators,
                       float *restrict acc, float *rd, float *rr) {
    for (int64_t b = first; b < last; ++b) {
        const float *v = creators + (b / c) * n * d, *wb = w + b * k, *u = users + b * d;
        const int64_t *ib = idx + b * k;
        for (int64_t q = 0; q < d; ++q) acc[q] = 0.0f;
        for (int64_t t = 0; t < k; ++t) {
            const float *restrict row = v + ib[t] * d;
            float wt = wb[t];
            for (int64_t q = 0; q < d; ++q) acc[q] += wt * row[q];
        }
        float norm = 0.0f, rel = 0.0f, tot = total[b];
        for (int64_t q = 0; q < d; ++q) {
            float m = acc[q] / tot;
            norm += m * m;
            rel += u[q] * m;
        }
        rd[b] = 1.0f - norm > 0.0f ? 1.0f - norm : 0.0f;
        rr[b] = rel;
    }
}

int sums_rows(int64_t rows, int64_t c, int64_t k, int64_t n, int64_t d, const float *w, const int64_t *idx,
              const float *total, const float *users, const float *creators, float *rd, float *rr, int threads) {
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        int64_t team = omp_get_num_threads(), me = omp_get_thread_num();
        int64_t a = rows * me / team, b = rows * (me + 1) / team;
        float *acc = malloc((size_t)(d > 0 ? d : 1) * sizeof *acc);
        if (!acc) failed = 1;
        else if (b > a) sums_range(a, b, c, k, n, d, w, idx, total, users, creators, acc, rd, rr);
        free(acc);
    }
    return failed ? -1 : 0;
}

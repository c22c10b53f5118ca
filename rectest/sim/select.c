/* Exact top-k selection for rows of float32 scores: the k-th largest value of each row, how many scores are at
 * least that value, and the indices of the first kmax of them in index order.
 *
 * 1. A row is mapped to order-preserving unsigned keys (a float's bits, sign-folded) in a buffer that fits the
 *    L1 cache.
 * 2. The k-th largest key. For k up to SMALL_K (beyond it the search is faster), one pass keeps the k largest
 *    keys in a sorted array, skipping blocks of 16 keys with none above its last. Otherwise a binary search over
 *    the key's 32 bits: each probe counts the keys at least a candidate (a branch-free pass the compiler
 *    vectorises), and the search stops once exactly k keys reach a candidate (11-16 probes for cosines): the
 *    k-th largest is then their minimum.
 * 3. One more pass counts the scores at least that value and, 64 at a time as a bit mask, lists their indices
 *    (or writes the 0/1 mask of the row, and beta * score: the softmax logits).
 * The value is an element of the row, so it is what torch.topk(k).values.min() returns, bit for bit.
 * Compiled and loaded by rectest/sim/select.py. */
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline uint32_t key_of(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

static inline float value_of(uint32_t key) {
    uint32_t b = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

static int64_t count_at_least(const uint32_t *keys, int64_t n, uint32_t c) {
    uint32_t count = 0;
    for (int64_t j = 0; j < n; ++j) count += keys[j] >= c;
    return count;
}

static uint32_t min_at_least(const uint32_t *keys, int64_t n, uint32_t c) {
    uint32_t best = 0xffffffffu;
    for (int64_t j = 0; j < n; ++j) {
        uint32_t k = keys[j] >= c ? keys[j] : 0xffffffffu;
        best = k < best ? k : best;
    }
    return best;
}

#ifndef SMALL_K
#define SMALL_K 24
#endif
#define BLOCK 16

/* The k-th largest of n keys for k <= SMALL_K: the k largest kept in descending order in top[0..k-1]. */
static uint32_t kth_small(const uint32_t *keys, int64_t n, int64_t k) {
    uint32_t top[SMALL_K];
    int64_t filled = 0;
    for (; filled < k; ++filled) { /* the first k keys, sorted by insertion */
        int64_t i = filled;
        for (; i > 0 && top[i - 1] < keys[filled]; --i) top[i] = top[i - 1];
        top[i] = keys[filled];
    }
    for (int64_t j0 = k; j0 < n; j0 += BLOCK) {
        int64_t len = n - j0 < BLOCK ? n - j0 : BLOCK;
        uint32_t last = top[k - 1], bits = 0; /* a key must exceed the k-th to enter */
        for (int64_t i = 0; i < len; ++i) bits |= (uint32_t)(keys[j0 + i] > last) << i;
        for (; bits; bits &= bits - 1) { /* the candidates in order, each against the k-th as it rises */
            uint32_t key = keys[j0 + __builtin_ctz(bits)];
            if (key <= top[k - 1]) continue;
            int64_t i = k - 1;
            for (; i > 0 && top[i - 1] < key; --i) top[i] = top[i - 1];
            top[i] = key;
        }
    }
    return top[k - 1];
}

/* The k-th largest of n keys by a binary search over the bits. */
static uint32_t kth_search(const uint32_t *keys, int64_t n, int64_t k) {
    uint32_t t = 0; /* invariant: at least k keys are >= t */
    for (int bit = 31; bit >= 0; --bit) {
        uint32_t c = t | (1u << bit);
        int64_t above = count_at_least(keys, n, c);
        if (above >= k) {
            t = c;
            if (above == k) return min_at_least(keys, n, c);
        }
    }
    return t;
}

/* Rows [first, rows) of: n, the row length; scores: rows x n; k: rows entries in [1, n];
 * kth: out, rows; count: out, rows (scores >= kth as floats); idx: out, rows x kmax (kmax may be 0), the first
 * kmax indices with score >= kth in index order, padded with the last one found; mask: out, rows x n, or NULL
 * (only with kmax = 0): 1.0f where score >= kth, 0.0f elsewhere; logits: out, rows x n, or NULL (only with a
 * mask): scale[row] * score (one IEEE product, as torch.mul). Returns 0, or -1 if out of memory. */
static int select_range(int64_t first, int64_t rows, int64_t n, const float *scores, const int64_t *k, float *kth,
                        int64_t *count, int64_t *idx, int64_t kmax, float *mask, float *logits,
                        const float *scale) {
    uint32_t *keys = malloc((size_t)n * sizeof *keys);
    if (!keys) return -1;
    for (int64_t r = first; r < rows; ++r) {
        const float *s = scores + r * n;
        for (int64_t j = 0; j < n; ++j) keys[j] = key_of(s[j]);
        uint32_t t = k[r] <= SMALL_K ? kth_small(keys, n, k[r]) : kth_search(keys, n, k[r]);
        float v = value_of(t);
        kth[r] = v;
        int64_t found = 0;
        int64_t *out = idx + r * kmax;
        if (mask) {
            float *out_mask = mask + r * n;
            uint32_t f = 0;
            if (logits) { /* (exp of -inf or of underflowing logits is slow in torch: the mask stays apart) */
                float b = scale[r], *out_logits = logits + r * n;
                for (int64_t j = 0; j < n; ++j) {
                    uint32_t in = s[j] >= v;
                    out_mask[j] = (float)in;
                    out_logits[j] = b * s[j];
                    f += in;
                }
            } else {
                for (int64_t j = 0; j < n; ++j) {
                    uint32_t in = s[j] >= v;
                    out_mask[j] = (float)in;
                    f += in;
                }
            }
            found = f;
        } else if (kmax == 0) {
            uint32_t f = 0;
            for (int64_t j = 0; j < n; ++j) f += s[j] >= v;
            found = f;
        } else {
            for (int64_t j0 = 0; j0 < n; j0 += 64) { /* a 64-bit mask per block, its set bits read in order */
                int64_t len = n - j0 < 64 ? n - j0 : 64;
                uint64_t bits = 0;
                for (int64_t i = 0; i < len; ++i) bits |= (uint64_t)(s[j0 + i] >= v) << i;
                for (; bits && found < kmax; bits &= bits - 1) out[found++] = j0 + __builtin_ctzll(bits);
                found += __builtin_popcountll(bits);
            }
        }
        count[r] = found;
        for (int64_t i = found < kmax ? found : kmax; i < kmax; ++i) out[i] = found ? out[found - 1] : 0;
    }
    free(keys);
    return 0;
}

/* Rows split over `threads` OpenMP threads: the process's own OpenMP runtime when it is already loaded (torch's
 * libgomp.so.1 has that soname), so the kernel runs on torch's threads instead of competing with them. */
int select_rows(int64_t rows, int64_t n, const float *scores, const int64_t *k, float *kth, int64_t *count,
                int64_t *idx, int64_t kmax, float *mask, float *logits, const float *scale, int threads) {
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        int64_t team = omp_get_num_threads(), me = omp_get_thread_num();
        int64_t a = rows * me / team, b = rows * (me + 1) / team;
        if (b > a) failed |= select_range(a, b, n, scores, k, kth, count, idx, kmax, mask, logits, scale) != 0;
    }
    return failed ? -1 : 0;
}

/* Exact top-k selection for rows of float32 scores: the k-th largest value of each row, how many scores are at
 * least that value, and the indices of the first kmax of them in index order.
 *
 * 1. A row is mapped to order-preserving unsigned keys (a float's bits, sign-folded) in a buffer that fits the
 *    L1 cache.
 * 2. The k-th largest key is found by a binary search over its 32 bits: each probe counts the keys at least a
 *    candidate (one branch-free pass the compiler vectorises). The search stops once exactly k keys reach a
 *    candidate (11-16 probes for cosines): the k-th largest is then their minimum.
 * 3. One more pass counts the scores at least that value and, 64 at a time as a bit mask, lists their indices
 *    (or writes the 0/1 mask of the row, and beta * score: the softmax logits).
 * The value is an element of the row, so it is what torch.topk(k).values.min() returns, bit for bit.
 * Compiled and loaded by rectest/sim/select.py. */
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

/* rows: number of rows; n: row length; scores: rows x n; k: rows entries in [1, n];
 * kth: out, rows; count: out, rows (scores >= kth as floats); idx: out, rows x kmax (kmax may be 0), the first
 * kmax indices with score >= kth in index order, padded with the last one found; mask: out, rows x n, or NULL
 * (only with kmax = 0): 1.0f where score >= kth, 0.0f elsewhere; logits: out, rows x n, or NULL (only with a
 * mask): scale[row] * score (one IEEE product, as torch.mul). Returns 0, or -1 if out of memory. */
int select_rows(int64_t rows, int64_t n, const float *scores, const int64_t *k, float *kth, int64_t *count,
                int64_t *idx, int64_t kmax, float *mask, float *logits, const float *scale) {
    uint32_t *keys = malloc((size_t)n * sizeof *keys);
    if (!keys) return -1;
    for (int64_t r = 0; r < rows; ++r) {
        const float *s = scores + r * n;
        for (int64_t j = 0; j < n; ++j) keys[j] = key_of(s[j]);
        int64_t want = k[r];
        uint32_t t = 0; /* invariant: at least `want` keys are >= t */
        for (int bit = 31; bit >= 0; --bit) {
            uint32_t c = t | (1u << bit);
            int64_t above = count_at_least(keys, n, c);
            if (above >= want) {
                t = c;
                if (above == want) {
                    t = min_at_least(keys, n, c);
                    break;
                }
            }
        }
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
                uint64_t mask = 0;
                for (int64_t i = 0; i < len; ++i) mask |= (uint64_t)(s[j0 + i] >= v) << i;
                for (; mask && found < kmax; mask &= mask - 1) out[found++] = j0 + __builtin_ctzll(mask);
                found += __builtin_popcountll(mask);
            }
        }
        count[r] = found;
        for (int64_t i = found < kmax ? found : kmax; i < kmax; ++i) out[i] = found ? out[found - 1] : 0;
    }
    free(keys);
    return 0;
}

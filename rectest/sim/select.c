/* Exact top-k selection for rows of float32 scores: the k-th largest value of each row, how many scores are at
 * least that value, and the indices of the first kmax of them in index order.
 *
 * 1. A row is mapped to order-preserving unsigned keys (a float's bits, sign-folded) in a buffer that fits the
 *    L1 cache.
 * 2. The k-th largest key. For k = 1, or a k small against the row (k * 384 <= n, k <= SMALL_K), one pass keeps
 *    the k largest keys in a sorted array, skipping blocks of 16 keys with none above its last (about 135 ns a
 *    rank on rows of 1,682 scores). Otherwise a binary search over the key's 32 bits: each probe counts the keys
 *    at least a candidate (a branch-free pass the compiler vectorises), and the search stops once exactly k keys
 *    reach a candidate (11-16 probes for cosines): the k-th largest is then their minimum. Once a probe's side
 *    holds at most 3/4 of the keys still searched, the search goes on over that side alone (compressed into a
 *    scratch buffer), so most probes read a few dozen keys: about 1 us a row of 1,682 whatever k (3 us before).
 * 3. One more pass counts the scores at least that value and, 64 at a time as a bit mask, lists their indices
 *    (or writes the 0/1 mask of the row, and beta * score: the softmax logits).
 * The value is an element of the row, so it is what torch.topk(k).values.min() returns, bit for bit.
 *
 * With a hint per row (a score from the row's previous step, carried by the caller), steps 1-3 run on the
 * candidates alone: one vectorised pass gathers the scores at least the hint; when at least k reach it, the k-th
 * largest of the row is the k-th largest of those candidates (every other score is below the hint), so the
 * search and the listing read a hundred-odd candidates instead of the whole row. The hint moves up to the row's
 * (k + HINT_SLACK)-th largest score when more candidates than that reach it (else it stays, lower), so that it
 * still has k scores above it after the vectors move; a row with fewer
 * than k (or with no hint yet) is searched whole, as above, and its (k + HINT_SLACK)-th score becomes its hint. The
 * hint changes only the cost: every result is the same as without it.
 * Compiled and loaded by rectest/sim/select.py. */
#ifdef __AVX512F__
#include <immintrin.h>
#endif
#include <math.h>
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

#ifndef HINT_SLACK
#define HINT_SLACK 32 /* (32 kept every row hinted in tests of 100 and 1,000 of 1,682 scores after a move of 0.1) */
#endif

/* The keys of w[0..m) at least c (upper) or below it (!upper), in order, into dst (room for m + 16; dst may be w:
 * entry o <= j is written after the 16 keys from j are read). Returns how many. */
static int64_t keep_keys(const uint32_t *w, int64_t m, uint32_t c, int upper, uint32_t *dst) {
    int64_t o = 0, j = 0;
#ifdef __AVX512F__
    const __m512i cv = _mm512_set1_epi32((int)c);
    for (; j + 16 <= m; j += 16) {
        __m512i x = _mm512_loadu_si512(w + j);
        __mmask16 in = _mm512_cmpge_epu32_mask(x, cv);
        in = upper ? in : (__mmask16)~in;
        _mm512_storeu_si512(dst + o, _mm512_maskz_compress_epi32(in, x));
        o += __builtin_popcount(in);
    }
#endif
    for (; j < m; ++j) {
        uint32_t x = w[j];
        dst[o] = x;
        o += (x >= c) == (upper != 0);
    }
    return o;
}

/* The k-th largest of n keys by kth_search's search over the bits on a working set that shrinks: once a probe's
 * side holds at most 3/4 of the set, the set is cut to that side (compressed into scratch, room for n + 16), so
 * the later probes read a few dozen keys, not n (at half, k = n / 2 of cosines kept whole sets: 3.3 against
 * 1.1 us a row of 2,000). keys is not changed. */
static uint32_t kth_narrow(const uint32_t *keys, int64_t n, int64_t k, uint32_t *scratch) {
    const uint32_t *w = keys;
    int64_t m = n, need = k; /* the answer is the need-th largest of w[0..m), and at least need keys are >= t */
    uint32_t t = 0;
    for (int bit = 31; bit >= 0; --bit) {
        if (m <= 64) return kth_search(w, m, need); /* (a short set: the plain search) */
        uint32_t c = t | (1u << bit);
        int64_t above = count_at_least(w, m, c);
        if (above >= need) {
            t = c;
            if (above == need) return min_at_least(w, m, c);
            if (4 * above <= 3 * m) {
                m = keep_keys(w, m, c, 1, scratch);
                w = scratch;
            }
        } else if (4 * above >= m) { /* (a set kept whole still holds the keys >= c: need counts them) */
            need -= above;
            m = keep_keys(w, m, c, 0, scratch);
            w = scratch;
        }
    }
    return t;
}

/* The k-th largest of n keys, by whichever search is faster for k and n (scratch: room for n + 16 keys). */
static uint32_t kth_key(const uint32_t *keys, int64_t n, int64_t k, uint32_t *scratch) {
    /* (on rows of 1,682 the kept list costs about 135 ns a rank, the narrowing search about 1 us whatever k) */
    if (k == 1 || (k <= SMALL_K && k * 384 <= n)) return kth_small(keys, n, k);
    return kth_narrow(keys, n, k, scratch); /* (the plain search itself on rows of 64 or fewer) */
}

/* The keys and the positions (in index order) of the scores at least h, and (in *nan) whether the row holds a
 * NaN. One pass: with AVX-512, 16 scores a compare, whose passing keys and positions are compressed into a
 * register and stored whole at entry c <= j (the next store overwrites the excess; the buffers keep 16 spare);
 * elsewhere 64 scores at a time as a bit mask whose set bits are read in order. Returns how many. */
static int64_t gather_from(const float *s, int64_t n, float h, uint32_t *keys, int32_t *pos, int *nan) {
    int64_t c = 0, j = 0;
    uint32_t bad = 0;
#ifdef __AVX512F__
    const __m512 hv = _mm512_set1_ps(h);
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u), step = _mm512_set1_epi32(16);
    __m512i at = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (; j + 16 <= n; j += 16, at = _mm512_add_epi32(at, step)) {
        __m512 x = _mm512_loadu_ps(s + j);
        __mmask16 in = _mm512_cmp_ps_mask(x, hv, _CMP_GE_OQ);
        bad |= _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
        __m512i b = _mm512_castps_si512(x); /* key_of: negative floats inverted, the sign bit set on the rest */
        __mmask16 neg = _mm512_test_epi32_mask(b, sign);
        __m512i key = _mm512_mask_xor_epi32(_mm512_or_si512(b, sign), neg, b, _mm512_set1_epi32(-1));
        _mm512_storeu_si512(keys + c, _mm512_maskz_compress_epi32(in, key));
        _mm512_storeu_si512(pos + c, _mm512_maskz_compress_epi32(in, at));
        c += __builtin_popcount(in);
    }
#endif
    for (int64_t j0 = j; j0 < n; j0 += 64) {
        int64_t len = n - j0 < 64 ? n - j0 : 64;
        uint64_t bits = 0;
        for (int64_t i = 0; i < len; ++i) {
            bits |= (uint64_t)(s[j0 + i] >= h) << i;
            bad |= s[j0 + i] != s[j0 + i];
        }
        for (; bits; bits &= bits - 1) {
            int64_t i = j0 + __builtin_ctzll(bits);
            keys[c] = key_of(s[i]);
            pos[c++] = (int32_t)i;
        }
    }
    *nan = bad != 0;
    return c;
}

/* The k-th largest score of a NaN-free row from its candidates (the scores at least the hint *h, refreshed), or
 * 1 if the row holds a NaN (then *h is not changed). The candidates' keys and positions are left in keys[0..*c)
 * and pos[0..*c): every score at least the k-th largest is among them. */
static int kth_hinted(const float *s, int64_t n, int64_t k, float *h, uint32_t *keys, int32_t *pos, int64_t *c,
                      uint32_t *t, uint32_t *scratch) {
    int nan;
    float hint = *h;
    int64_t k2 = k + HINT_SLACK < n ? k + HINT_SLACK : n;
    int hinted = hint == hint;
    if (hinted) {
        *c = gather_from(s, n, hint, keys, pos, &nan);
        if (nan) return 1;
        hinted = *c >= k;
    }
    if (!hinted) { /* the whole row: its k2-th largest becomes the hint */
        for (int64_t j = 0; j < n; ++j) {
            if (s[j] != s[j]) return 1;
            keys[j] = key_of(s[j]);
        }
        hint = value_of(kth_key(keys, n, k2, scratch));
        *c = gather_from(s, n, hint, keys, pos, &nan);
    }
    *t = kth_key(keys, *c, k, scratch);
    /* a hint that kept more than k2 candidates moves up to the current k2-th score (else it stays, lower) */
    *h = hinted && *c > k2 ? value_of(kth_key(keys, *c, k2, scratch)) : hint;
    return 0;
}

/* The row's 0/1 mask of the scores >= v and, unless logits is NULL, b * score (one IEEE product, as torch.mul);
 * returns the number of ones. The pointers do not alias, so the loops are vectorised. (The exp of -inf or of
 * underflowing logits is slow in torch: the mask stays apart.) */
static int64_t mask_row(const float *restrict s, int64_t n, float v, float *restrict mask, float *restrict logits,
                        float b) {
    int32_t f = 0; /* (signed counts and a select of 1.0f / 0.0f: GCC vectorises these loops, not a cast) */
    if (logits) {
        for (int64_t j = 0; j < n; ++j) {
            int32_t in = s[j] >= v;
            mask[j] = in ? 1.0f : 0.0f;
            logits[j] = b * s[j];
            f += in;
        }
    } else {
        for (int64_t j = 0; j < n; ++j) {
            int32_t in = s[j] >= v;
            mask[j] = in ? 1.0f : 0.0f;
            f += in;
        }
    }
    return f;
}

/* picked: NULL, or rows x kmax: scale[r] * the row's score at each listed index (one IEEE product, as torch.mul of
 * the gathered scores). */
static inline void picked_logits(const float *s, const int64_t *out, int64_t kmax, const float *scale, float *picked,
                                 int64_t r) {
    if (!picked) return;
    for (int64_t i = 0; i < kmax; ++i) picked[r * kmax + i] = scale[r] * s[out[i]];
}

#ifdef __AVX512F__
#define SHORT_ROW 64 /* rows of at most this many scores are selected in four registers (short_row) */

/* The order-preserving keys of 16 scores (key_of, lane-wise); lanes outside `valid` get key 0, which no probe
 * of the search counts (every probe is at least 1). */
static inline __m512i keys16(__m512 x, __mmask16 valid) {
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    __m512i b = _mm512_castps_si512(x);
    __mmask16 neg = _mm512_test_epi32_mask(b, sign);
    __m512i key = _mm512_mask_xor_epi32(_mm512_or_si512(b, sign), neg, b, _mm512_set1_epi32(-1));
    return _mm512_maskz_mov_epi32(valid, key);
}

/* The 64-bit mask of the keys at least c, 16 keys a register. */
static inline uint64_t keys_at_least(const __m512i x[4], uint32_t c) {
    const __m512i cv = _mm512_set1_epi32((int)c);
    return (uint64_t)_mm512_cmpge_epu32_mask(x[0], cv) | (uint64_t)_mm512_cmpge_epu32_mask(x[1], cv) << 16 |
           (uint64_t)_mm512_cmpge_epu32_mask(x[2], cv) << 32 | (uint64_t)_mm512_cmpge_epu32_mask(x[3], cv) << 48;
}

/* One row of n <= SHORT_ROW scores, held in four registers: the k-th largest key (kth_search's search over
 * the bits, each probe four compares and a popcount; k = 1: the largest key), then the first kmax indices of
 * the scores >= that value in index order, from one 64-bit mask. Writes what select_range writes for a row
 * without a hint or a mask, bit for bit. */
static void short_row(const float *s, int64_t n, int64_t k, float *kth, int64_t *count, int64_t *out,
                      int64_t kmax) {
    __m512 x[4];
    __m512i key[4];
    for (int q = 0; q < 4; ++q) {
        int64_t left = n - 16 * q;
        __mmask16 valid = left >= 16 ? 0xffff : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
        x[q] = _mm512_maskz_loadu_ps(valid, s + 16 * q);
        key[q] = keys16(x[q], valid);
    }
    uint32_t t = 0;
    if (k == 1) {
        __m512i top = _mm512_max_epu32(_mm512_max_epu32(key[0], key[1]), _mm512_max_epu32(key[2], key[3]));
        t = _mm512_reduce_max_epu32(top);
    } else {
        for (int bit = 31; bit >= 0; --bit) {
            uint32_t c = t | (1u << bit);
            uint64_t in = keys_at_least(key, c);
            int64_t above = __builtin_popcountll(in);
            if (above < k) continue;
            t = c;
            if (above == k) { /* exactly k keys reach c: the k-th is their minimum */
                const __m512i none = _mm512_set1_epi32(-1);
                __m512i lo = _mm512_min_epu32(_mm512_mask_mov_epi32(none, (__mmask16)in, key[0]),
                                              _mm512_mask_mov_epi32(none, (__mmask16)(in >> 16), key[1]));
                __m512i hi = _mm512_min_epu32(_mm512_mask_mov_epi32(none, (__mmask16)(in >> 32), key[2]),
                                              _mm512_mask_mov_epi32(none, (__mmask16)(in >> 48), key[3]));
                t = _mm512_reduce_min_epu32(_mm512_min_epu32(lo, hi));
                break;
            }
        }
    }
    float v = value_of(t);
    *kth = v;
    const __m512 vv = _mm512_set1_ps(v);
    uint64_t bits = 0; /* the scores >= v (false for NaN, as s[j] >= v); padded lanes hold 0.0f: masked out */
    for (int q = 0; q < 4; ++q) bits |= (uint64_t)_mm512_cmp_ps_mask(x[q], vv, _CMP_GE_OQ) << (16 * q);
    bits &= n == 64 ? ~0ull : (1ull << n) - 1;
    int64_t found = __builtin_popcountll(bits), i = 0;
    for (; bits && i < kmax; bits &= bits - 1) out[i++] = __builtin_ctzll(bits);
    *count = found;
    for (; i < kmax; ++i) out[i] = found ? out[found - 1] : 0;
}
#endif

/* Rows [first, rows) of: n, the row length; scores: rows x n (or any number of rows x n with at); at: rows row
 * numbers into scores, or NULL (row r is scores' row r); k: rows entries in [1, n];
 * kth: out, rows; count: out, rows (scores >= kth as floats); idx: out, rows x kmax (kmax may be 0), the first
 * kmax indices with score >= kth in index order, padded with the last one found; mask: out, rows x n, or NULL
 * (only with kmax = 0): 1.0f where score >= kth, 0.0f elsewhere; logits: out, rows x n, or NULL (only with a
 * mask): scale[row] * score (one IEEE product, as torch.mul); hint: in and out, rows, or NULL: each row's hint
 * (NaN: none yet), refreshed (see kth_hinted); picked: out, rows x kmax, or NULL (with scale, without a mask):
 * scale[r] * the score at each listed index. Returns 0, or -1 if out of memory. */
static int select_range(int64_t first, int64_t rows, int64_t n, const float *scores, const int64_t *at,
                        const int64_t *k, float *kth, int64_t *count, int64_t *idx, int64_t kmax, float *mask,
                        float *logits, const float *scale, float *hint, float *picked) {
    uint32_t *keys = malloc((size_t)(n + 16) * sizeof *keys), *scratch = malloc((size_t)(n + 16) * sizeof *scratch);
    int32_t *pos = malloc((size_t)(n + 16) * sizeof *pos);
    if (!keys || !pos || !scratch) {
        free(keys);
        free(pos);
        free(scratch);
        return -1;
    }
    for (int64_t r = first; r < rows; ++r) {
        const float *s = scores + (at ? at[r] : r) * n;
#ifdef __AVX512F__
        if (n <= SHORT_ROW && !hint && !mask) {
            short_row(s, n, k[r], kth + r, count + r, idx + r * kmax, kmax);
            picked_logits(s, idx + r * kmax, kmax, scale, picked, r);
            continue;
        }
#endif
        uint32_t t;
        int64_t c = -1; /* candidates in keys / pos (-1: none, the whole row was searched) */
        if (!hint || kth_hinted(s, n, k[r], hint + r, keys, pos, &c, &t, scratch)) {
            c = -1;                 /* a NaN row: searched whole (its candidates, if gathered, are not all) */
            if (hint) hint[r] = NAN; /* and no hint kept */
            for (int64_t j = 0; j < n; ++j) keys[j] = key_of(s[j]);
            t = kth_key(keys, n, k[r], scratch);
        }
        float v = value_of(t);
        kth[r] = v;
        int64_t found = 0;
        int64_t *out = idx + r * kmax;
        if (mask) {
            found = mask_row(s, n, v, mask + r * n, logits ? logits + r * n : NULL, logits ? scale[r] : 0.0f);
        } else if (c >= 0) { /* every score >= v is a candidate, and they are in index order */
            for (int64_t i = 0; i < c; ++i) { /* the candidates >= v compacted in place, without a branch */
                int32_t j = pos[i];
                pos[found] = j;
                found += s[j] >= v;
            }
            for (int64_t i = 0; i < found && i < kmax; ++i) out[i] = pos[i];
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
        picked_logits(s, out, kmax, scale, picked, r);
    }
    free(keys);
    free(pos);
    free(scratch);
    return 0;
}

/* Rows split over `threads` OpenMP threads: the process's own OpenMP runtime when it is already loaded (torch's
 * libgomp.so.1 has that soname), so the kernel runs on torch's threads instead of competing with them. */
int select_rows(int64_t rows, int64_t n, const float *scores, const int64_t *at, const int64_t *k, float *kth,
                int64_t *count, int64_t *idx, int64_t kmax, float *mask, float *logits, const float *scale,
                float *hint, float *picked, int threads) {
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        int64_t team = omp_get_num_threads(), me = omp_get_thread_num();
        int64_t a = rows * me / team, b = rows * (me + 1) / team;
        if (b > a)
            failed |=
                select_range(a, b, n, scores, at, k, kth, count, idx, kmax, mask, logits, scale, hint, picked) != 0;
    }
    return failed ? -1 : 0;
}

/* A draw from softmax(b * s) over the row's eligible scores, those at least v (v = -inf: all): the row's index,
 * or -1 if the row holds a NaN or its largest eligible score is not finite. keys, pos and w: room for n + 16
 * entries.
 * 1. The eligible scores' positions, in index order, and their largest score smax (one compressing pass).
 * 2. None eligible: the uniform creator floor(u n).
 * 3. Up to L proposals p_j, uniform over the eligible: the eligible creator floor(p_j c) of the c, accepted when
 *    frac(p_j c) < exp(b (s - smax)), a probability in (0, 1]. An accepted proposal is distributed exactly as
 *    softmax(b s) over the eligible (rejection sampling against the uniform proposal).
 * 4. All rejected (or L = 0): the inverse-CDF draw of u over the eligible weights exp(b (s - smax)), in double.
 *    It is independent of the rejected proposals, so the mixture of 3 and 4 is exactly the softmax. */
static int64_t draw_row(const float *s, int64_t n, float v, float b, double u, const double *p, int64_t L,
                        uint32_t *keys, int32_t *pos, double *w) {
    int nan;
    int64_t c = gather_from(s, n, v, keys, pos, &nan);
    if (nan) return -1;
    if (c == 0) {
        int64_t i = (int64_t)(u * (double)n);
        return i < n ? i : n - 1;
    }
    uint32_t top = 0;
    for (int64_t i = 0; i < c; ++i) top = keys[i] > top ? keys[i] : top;
    double smax = value_of(top), bd = b;
    if (!isfinite(smax)) return -1;
    for (int64_t j = 0; j < L; ++j) {
        double x = p[j] * (double)c;
        int64_t i = (int64_t)x;
        i = i < c ? i : c - 1;
        if (x - (double)i < exp(bd * ((double)s[pos[i]] - smax))) return pos[i];
    }
    double total = 0.0;
    for (int64_t i = 0; i < c; ++i) total += w[i] = exp(bd * ((double)s[pos[i]] - smax));
    double target = u * total, acc = 0.0;
    for (int64_t i = 0; i < c; ++i) {
        acc += w[i];
        if (acc > target) return pos[i];
    }
    return pos[c - 1];
}

/* Rows [first, rows) of: scores rows x n; k: rows ranks in [1, n] (n: no truncation); tau: rows thresholds
 * (-inf: none); b: rows betas; u: rows uniforms; p: rows x L proposal uniforms (L may be 0); chosen: out, rows;
 * thr: out, rows, or NULL: each row's eligibility threshold max(k-th largest, tau).
 * A row's eligible scores are those at least max(its k-th largest, tau): the top k (ties at the k-th included)
 * above the threshold. Returns 0, or -1 if out of memory. */
static int draw_range(int64_t first, int64_t rows, int64_t n, const float *scores, const int64_t *k,
                      const float *tau, const float *b, const double *u, const double *p, int64_t L,
                      int64_t *chosen, float *thr) {
    uint32_t *keys = malloc((size_t)(n + 16) * sizeof *keys), *scratch = malloc((size_t)(n + 16) * sizeof *scratch);
    int32_t *pos = malloc((size_t)(n + 16) * sizeof *pos);
    double *w = malloc((size_t)(n + 16) * sizeof *w);
    int failed = !keys || !pos || !scratch || !w;
    for (int64_t r = first; r < rows && !failed; ++r) {
        const float *s = scores + r * n;
        float v = tau[r];
        chosen[r] = -1;
        if (thr) thr[r] = NAN;
        if (k[r] < n) { /* the k-th largest score (a NaN row: -1) */
            int bad = 0;
            for (int64_t j = 0; j < n; ++j) {
                bad |= s[j] != s[j];
                keys[j] = key_of(s[j]);
            }
            if (bad) continue;
            float kth = value_of(kth_key(keys, n, k[r], scratch));
            v = kth > v ? kth : v;
        }
        chosen[r] = draw_row(s, n, v, b[r], u[r], p ? p + r * L : NULL, p ? L : 0, keys, pos, w);
        if (thr) thr[r] = chosen[r] < 0 ? NAN : v;
    }
    free(keys);
    free(pos);
    free(scratch);
    free(w);
    return failed ? -1 : 0;
}

int draw_rows(int64_t rows, int64_t n, const float *scores, const int64_t *k, const float *tau,
              const float *beta, const double *u, const double *p, int64_t L, int64_t *chosen, float *thr,
              int threads) {
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        int64_t team = omp_get_num_threads(), me = omp_get_thread_num();
        int64_t a = rows * me / team, b = rows * (me + 1) / team;
        if (b > a) failed |= draw_range(a, b, n, scores, k, tau, beta, u, p, L, chosen, thr) != 0;
    }
    return failed ? -1 : 0;
}

/* Bilinear scaling of one crop of an RGB uint8 frame, computing only the crop's pixels.
 *
 * The caller gives, per output row i and column j, the source row / column of the left
 * (upper) tap and the two tap weights, integers summing to 2048 (datasets/transforms.py:
 * crop_taps, which also mirrors the columns for a flipped crop). Each output pixel is
 *     h(r, j) = (src[r][x_j] * u_j + src[r][x_j + 1] * v_j + 8) >> 4       per source row r
 *     out(i, j) = (h(y_i, j) * a_i + h(y_i + 1, j) * b_i + 2^17) >> 18
 * i.e. the float bilinear value before the final rounding to within the weights' precision
 * (1/2048) times the step between the taps, plus h's 1/256 of a level: at most 0.07 of a
 * grey level in the tests, so almost always the rounded float value.
 * The horizontal pass runs once per source row the crop needs and is kept for the next
 * output row (two rows in flight).
 *
 * On x86 CPUs with AVX2 (checked at run time) the horizontal pass takes four output pixels
 * per step: two 16-byte loads hold their taps, a byte shuffle widens them to 16-bit tap
 * pairs and one multiply-add per channel pair applies the weights; the vertical pass
 * blends 32 values per step. Elsewhere the same arithmetic runs in plain C. Both give the
 * same bits (tests/test_datasets_bilinear.py).
 *
 * Built with datasets/jpeg_window.c into datasets/_native.so by the Makefile, called
 * through ctypes (datasets/bilinear.py).
 */
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define X86 1
#endif


static void scale_row_plain(const unsigned char *row, const int *xofs, const short *xw,
                            int from, int to, short *h) {
    for (int j = from; j < to; j++) {
        const unsigned char *p = row + 3 * xofs[j];
        int u = xw[2 * j], v = xw[2 * j + 1];
        for (int c = 0; c < 3; c++) h[3 * j + c] = (short)((p[c] * u + p[c + 3] * v + 8) >> 4);
    }
}

static void blend_rows_plain(const short *h0, const short *h1, int a, int b, int from, int n,
                             unsigned char *out) {
    for (int k = from; k < n; k++)
        out[k] = (unsigned char)((h0[k] * a + h1[k] * b + (1 << 17)) >> 18);
}

#ifdef X86
static int use_avx2 = -1; /* -1: not decided yet */

/* Four output pixels j..j+3 as two pairs, each pair read with one 16-byte load at the
 * leftmost of its two left taps: possible when the pair's taps lie within 16 bytes and the
 * load stays inside the window's row (`fast`). Per pair, shuffle 0 makes the 16-bit tap
 * pairs of the first pixel's three channels and the second pixel's first channel, shuffle 1
 * those of the second pixel's other two channels; -128 in a shuffle makes a zero byte. */
struct group {
    int at[2], fast;
    int8_t shuffle[2][32];
    short weight[2][16];
};

static void make_groups(const int *xofs, const short *xw, int out_w, int src_cols,
                        struct group *g) {
    for (int n = 0, j = 0; j + 4 <= out_w; j += 4, n++) {
        g[n].fast = 1;
        for (int half = 0; half < 2; half++) {
            int p = j + 2 * half, xa = xofs[p], xb = xofs[p + 1];
            int base = xa < xb ? xa : xb, oa = 3 * (xa - base), ob = 3 * (xb - base);
            /* the pair reads bytes [oa, oa + 6) and [ob, ob + 6) of its load */
            if (oa > 10 || ob > 10 || 3 * base + 16 > 3 * src_cols) {
                g[n].fast = 0; /* done in plain C; the shuffles below go unused */
                oa = ob = 0;
            }
            g[n].at[half] = 3 * base;
            int8_t *s0 = g[n].shuffle[0] + 16 * half, *s1 = g[n].shuffle[1] + 16 * half;
            short *w0 = g[n].weight[0] + 8 * half, *w1 = g[n].weight[1] + 8 * half;
            for (int c = 0; c < 4; c++) { /* channels 0-2 of pixel p, channel 0 of p + 1 */
                int o = c < 3 ? oa + c : ob, pixel = c < 3 ? p : p + 1;
                int8_t pairs[4] = {(int8_t)o, -128, (int8_t)(o + 3), -128};
                for (int k = 0; k < 4; k++) s0[4 * c + k] = pairs[k];
                w0[2 * c] = xw[2 * pixel];
                w0[2 * c + 1] = xw[2 * pixel + 1];
            }
            for (int c = 0; c < 4; c++) { /* channels 1-2 of pixel p + 1, then zeros */
                int o = ob + 1 + c;
                int8_t pairs[4] = {(int8_t)o, -128, (int8_t)(o + 3), -128};
                for (int k = 0; k < 4; k++) s1[4 * c + k] = c < 2 ? pairs[k] : -128;
                w1[2 * c] = c < 2 ? xw[2 * (p + 1)] : 0;
                w1[2 * c + 1] = c < 2 ? xw[2 * (p + 1) + 1] : 0;
            }
        }
    }
}

__attribute__((target("avx2"))) static void scale_row_avx2(const unsigned char *row,
                                                           const struct group *g, int groups,
                                                           const int *xofs, const short *xw,
                                                           int out_w, short *h) {
    const __m256i eight = _mm256_set1_epi32(8);
    for (int n = 0; n < groups; n++) {
        if (!g[n].fast) {
            scale_row_plain(row, xofs, xw, 4 * n, 4 * n + 4, h);
            continue;
        }
        __m256i v = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(row + g[n].at[0]))),
            _mm_loadu_si128((const __m128i *)(row + g[n].at[1])), 1);
        __m256i s0 = _mm256_madd_epi16(
            _mm256_shuffle_epi8(v, _mm256_loadu_si256((const __m256i *)g[n].shuffle[0])),
            _mm256_loadu_si256((const __m256i *)g[n].weight[0]));
        __m256i s1 = _mm256_madd_epi16(
            _mm256_shuffle_epi8(v, _mm256_loadu_si256((const __m256i *)g[n].shuffle[1])),
            _mm256_loadu_si256((const __m256i *)g[n].weight[1]));
        s0 = _mm256_srai_epi32(_mm256_add_epi32(s0, eight), 4);
        s1 = _mm256_srai_epi32(_mm256_add_epi32(s1, eight), 4);
        /* Per 128-bit lane: the pair's six values, then two spare ones, which the next
         * store overwrites (h has room for them past the end). */
        __m256i packed = _mm256_packs_epi32(s0, s1);
        _mm_storeu_si128((__m128i *)(h + 12 * n), _mm256_castsi256_si128(packed));
        _mm_storeu_si128((__m128i *)(h + 12 * n + 6), _mm256_extracti128_si256(packed, 1));
    }
    scale_row_plain(row, xofs, xw, 4 * groups, out_w, h);
}

__attribute__((target("avx2"))) static void blend_rows_avx2(const short *h0, const short *h1,
                                                            int a, int b, int n,
                                                            unsigned char *out) {
    const __m256i weights = _mm256_set1_epi32((int)(((unsigned)b << 16) | (unsigned)a));
    const __m256i round = _mm256_set1_epi32(1 << 17);
    int k = 0;
    for (; k + 32 <= n; k += 32) {
        __m256i words[2];
        for (int half = 0; half < 2; half++) {
            __m256i r0 = _mm256_loadu_si256((const __m256i *)(h0 + k + 16 * half));
            __m256i r1 = _mm256_loadu_si256((const __m256i *)(h1 + k + 16 * half));
            __m256i lo = _mm256_madd_epi16(_mm256_unpacklo_epi16(r0, r1), weights);
            __m256i hi = _mm256_madd_epi16(_mm256_unpackhi_epi16(r0, r1), weights);
            lo = _mm256_srai_epi32(_mm256_add_epi32(lo, round), 18);
            hi = _mm256_srai_epi32(_mm256_add_epi32(hi, round), 18);
            words[half] = _mm256_packs_epi32(lo, hi); /* in order: unpack and pack are per lane */
        }
        __m256i bytes = _mm256_packus_epi16(words[0], words[1]);
        _mm256_storeu_si256((__m256i *)(out + k), _mm256_permute4x64_epi64(bytes, 0xD8));
    }
    blend_rows_plain(h0, h1, a, b, k, n, out);
}
#endif

/* Whether the AVX2 code runs: 1 or 0 sets it (0 for the plain C), -1 only asks.
 * Returns the setting in force. */
int bilinear_avx2(int enable) {
#ifdef X86
    if (enable >= 0 || use_avx2 < 0) {
        __builtin_cpu_init();
        use_avx2 = enable != 0 && __builtin_cpu_supports("avx2");
    }
    return use_avx2;
#else
    (void)enable;
    return 0;
#endif
}

/* Bytes of scratch memory bilinear_crop needs for an output `out_w` pixels wide. */
long bilinear_scratch_bytes(int out_w) {
    long bytes = 2L * (3L * out_w + 16) * (long)sizeof(short);
#ifdef X86
    bytes += (long)(out_w / 4) * (long)sizeof(struct group) + 32;
#endif
    return bytes;
}

/* Scale a crop (see the top of the file) from the window `src` (src_rows x src_cols RGB
 * pixels, rows src_row_bytes apart) into `out` (out_h x out_w RGB, rows out_row_bytes apart).
 * yofs/xofs are window coordinates of the upper/left taps; yw/xw hold two weights per
 * output row/column. Returns 0, or -1 if a tap lies outside the window. */
int bilinear_crop(const unsigned char *src, long src_row_bytes, int src_rows, int src_cols,
                  const int *yofs, const short *yw, int out_h, const int *xofs,
                  const short *xw, int out_w, unsigned char *out, long out_row_bytes,
                  void *scratch) {
    for (int j = 0; j < out_w; j++)
        if (xofs[j] < 0 || xofs[j] > src_cols - 2) return -1;
    for (int i = 0; i < out_h; i++)
        if (yofs[i] < 0 || yofs[i] > src_rows - 2) return -1;
    int n = 3 * out_w, stride = n + 16;
    short *rows[2] = {(short *)scratch, (short *)scratch + stride};
    int have[2] = {-1, -1}; /* the source row whose horizontal pass each buffer holds */
#ifdef X86
    int avx2 = bilinear_avx2(-1), groups = out_w / 4;
    /* struct group holds ints: align it past the two short rows */
    uintptr_t after = (uintptr_t)((short *)scratch + 2 * stride);
    struct group *g = (struct group *)((after + 31) & ~(uintptr_t)31);
    if (avx2) make_groups(xofs, xw, out_w, src_cols, g);
#endif
    for (int i = 0; i < out_h; i++) {
        int y = yofs[i];
        for (int want = y; want <= y + 1; want++) {
            int slot = want & 1;
            if (have[slot] == want) continue;
            const unsigned char *row = src + (long)want * src_row_bytes;
            /* The rows of a memory-mapped frame come from memory, not the cache: ask for
             * the row after next while this one is scaled (a mirrored crop reads each row
             * backwards, which the hardware prefetchers follow badly). */
            if (want + 2 < src_rows)
                for (int b = 0; b < 3 * src_cols; b += 64)
                    __builtin_prefetch(row + 2 * src_row_bytes + b, 0, 0);
#ifdef X86
            if (avx2)
                scale_row_avx2(row, g, groups, xofs, xw, out_w, rows[slot]);
            else
#endif
                scale_row_plain(row, xofs, xw, 0, out_w, rows[slot]);
            have[slot] = want;
        }
        unsigned char *o = out + (long)i * out_row_bytes;
        const short *h0 = rows[y & 1], *h1 = rows[(y + 1) & 1];
#ifdef X86
        if (avx2) {
            blend_rows_avx2(h0, h1, yw[2 * i], yw[2 * i + 1], n, o);
            continue;
        }
#endif
        blend_rows_plain(h0, h1, yw[2 * i], yw[2 * i + 1], 0, n, o);
    }
    return 0;
}

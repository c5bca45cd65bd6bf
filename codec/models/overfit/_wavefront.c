/* The fitted kind's decoder, compiled (``codec.models.overfit.fast`` calls it; docs/FORMAT.md, "overfit").
 *
 * Why: the torch reference (``coding._decode_grid``) makes one rANS call and a dozen tensor operations per
 * wave, converting all 256 coding tables on every call: about a millisecond a wave whatever its size. Here a
 * tile's whole grid walk is one call: per position the exact ARM, the table choice and the rANS symbol, in
 * wave order, then the upsampling and synthesis, so a decode costs time in proportion to its positions.
 *
 *   symbols(data, tables, indexes, out)        the parameter stream: one symbol per given table
 *   grids(data, tables, arm, rule, taps, ...)  stream 1: every grid, finest first, into float32 planes
 *   image(grids, sizes, up, syn, out)          upsampling and synthesis: float32 (3, h, w), unclamped
 *
 * Exactness. The rANS decoder is CompressAI's ``RansDecoder`` (precision 16, 4-bit bypass, 64-bit state,
 * 32-bit little-endian words) with the bounds checks it lacks: a read past the stream gives zeros, as the
 * reference's zero padding (``engine.guarded``) does, and an escape of more than 8 nibbles, which no int32
 * value needs and on which the reference shifts past 32 bits, is refused. The ARM is ``ExactNetwork.columns``:
 * integers held in doubles, every partial sum below 2^53 (checked before the call, ``fixed.pointwise_layers``),
 * so any summation order gives the same integers; floors by powers of two, ReLU, clamps to ±2^26 at each
 * layer's input. The table rule is ``laplace.table_index`` in the same float64 operations. Pixels are float32
 * and follow the reference's operation order closely, not exactly (within one level).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION 16
#define BYPASS_BITS 4
#define MAX_NIBBLES 8 /* an int32 escape value has at most 8 nibbles */
#define RANS_L (1ull << 31)
#define MAX_CONTEXT 24
#define MAX_HIDDEN 64
#define CORRUPT "corrupt rANS stream: an escape longer than any value"

/* The loops below, built twice on x86-64 and picked at load time: AVX2 where the CPU has it (floor inlined as
 * one rounding instruction, 4 doubles or 8 floats a step: 2x faster measured), else baseline x86-64. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define HOT __attribute__((target_clones("avx2", "default")))
#else
#define HOT
#endif

/* -- rANS (CompressAI's Rans64 decoder) ------------------------------------------------------------------ */
typedef struct {
    const int32_t *cdf, *start, *len, *offset;
    Py_ssize_t count;
} Tables;

typedef struct {
    uint64_t x;
    const uint8_t *data;
    Py_ssize_t size, pos;
} Rans;

static inline uint32_t rans_word(Rans *r) {
    uint32_t w = 0;
    if (r->pos >= 0 && r->pos + 4 <= r->size) {
        const uint8_t *p = r->data + r->pos;
        w = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    } else {
        for (int b = 0; b < 4; b++)
            if (r->pos + b < r->size) w |= (uint32_t)r->data[r->pos + b] << (8 * b);
    }
    if (r->pos < PY_SSIZE_T_MAX - 4) r->pos += 4;
    return w;
}

static void rans_init(Rans *r, const uint8_t *data, Py_ssize_t size) {
    r->data = data;
    r->size = size;
    r->pos = 0;
    uint64_t lo = rans_word(r), hi = rans_word(r);
    r->x = lo | hi << 32;
}

static inline void rans_renorm(Rans *r) {
    if (r->x < RANS_L) r->x = r->x << 32 | rans_word(r);
}

static inline uint32_t rans_bits(Rans *r, int n) {
    uint32_t v = (uint32_t)(r->x & ((1u << n) - 1));
    r->x >>= n;
    rans_renorm(r);
    return v;
}

/* The next symbol, coded with table t, into *out: 0, or -1 on an escape no valid stream holds. */
static inline int rans_symbol(Rans *r, const Tables *T, int t, int32_t *out) {
    const int32_t *cdf = T->cdf + T->start[t];
    int32_t len = T->len[t], max_value = len - 2;
    uint32_t cum = (uint32_t)(r->x & ((1u << PRECISION) - 1));
    int lo = 0, hi = len - 1; /* cdf[lo] <= cum < cdf[hi]: the last entry is 2^16 */
    while (hi - lo > 1) {
        int mid = (lo + hi) >> 1;
        if ((uint32_t)cdf[mid] <= cum) lo = mid;
        else hi = mid;
    }
    uint64_t start = (uint32_t)cdf[lo], freq = (uint32_t)(cdf[lo + 1] - cdf[lo]);
    r->x = freq * (r->x >> PRECISION) + (r->x & ((1u << PRECISION) - 1)) - start;
    rans_renorm(r);
    int64_t value = lo;
    if (lo == max_value) { /* bypass: a nibble count, then the nibbles of the zig-zagged value */
        uint32_t n = rans_bits(r, BYPASS_BITS);
        if (n > MAX_NIBBLES) return -1;
        uint32_t raw = 0;
        for (uint32_t j = 0; j < n; j++) raw |= rans_bits(r, BYPASS_BITS) << (BYPASS_BITS * j);
        int32_t rv = (int32_t)raw;
        value = rv >> 1;
        value = (rv & 1) ? -value - 1 : value + max_value;
    }
    *out = (int32_t)(uint32_t)(value + T->offset[t]); /* int32 wrap-around, as the reference's */
    return 0;
}

/* -- the exact ARM and the table rule ---------------------------------------------------------------------- */
typedef struct {
    int K, A;
    const double *w1t, *b1, *w2t, *b2, *w3t, *b3; /* weights transposed: w1t[k * A + o] */
    double s1, s2, s3;                            /* 2^-frac of each layer: its floor shift */
    double clamp;                                 /* 2^CLAMP_BITS */
    /* the table rule: q = floor((mu·F + half) / one), m = floor(q / F), k = floor((log b − L0 + D/2) / D) */
    double fractions, half, one, log_b0, half_step, step, last_scale, store;
} Arm;

static inline double clampd(double v, double c) { return v < -c ? -c : (v > c ? c : v); }

/* Hidden layer: out = clamp(relu(floor((b + Wᵀ·in) · s))). */
static inline void arm_layer(const double *wt, const double *b, double s, double c, const double *in, int n_in,
                             int n_out, double *out) {
    double acc[MAX_HIDDEN];
    for (int o = 0; o < n_out; o++) acc[o] = b[o];
    for (int k = 0; k < n_in; k++) {
        double v = in[k];
        const double *w = wt + (Py_ssize_t)k * n_out;
        for (int o = 0; o < n_out; o++) acc[o] += w[o] * v;
    }
    for (int o = 0; o < n_out; o++) {
        double v = floor(acc[o] * s);
        out[o] = clampd(v >= 0 ? v : 0, c);
    }
}

/* The table index and the centre's floor m of the position whose clamped fixed-point context is ctx. */
static inline int arm_table(const Arm *m, const double *ctx, double *centre) {
    double h1[MAX_HIDDEN], h2[MAX_HIDDEN], o[2];
    arm_layer(m->w1t, m->b1, m->s1, m->clamp, ctx, m->K, m->A, h1);
    arm_layer(m->w2t, m->b2, m->s2, m->clamp, h1, m->A, m->A, h2);
    o[0] = m->b3[0];
    o[1] = m->b3[1];
    for (int k = 0; k < m->A; k++) {
        o[0] += m->w3t[2 * k] * h2[k];
        o[1] += m->w3t[2 * k + 1] * h2[k];
    }
    double mu = floor(o[0] * m->s3), log_b = floor(o[1] * m->s3);
    double q = floor((mu * m->fractions + m->half) / m->one);
    double c = floor(q / m->fractions);
    double f = q - m->fractions * c;
    double k = floor((log_b - m->log_b0 + m->half_step) / m->step);
    k = k < 0 ? 0 : (k > m->last_scale ? m->last_scale : k);
    *centre = c;
    return (int)(k * m->fractions + f);
}

/* One h×w grid in wave order (t = slope·i + j ascending, then i) into out (h·w float32, raster order). */
HOT static int walk_grid(Rans *r, const Tables *T, const Arm *m, const int32_t *taps, int radius, int slope, int h,
                     int w, float *out) {
    Py_ssize_t pw = (Py_ssize_t)w + 2 * radius;
    int32_t *buf = calloc((size_t)(h + radius) * (size_t)pw, sizeof(int32_t)); /* zeros outside the grid */
    Py_ssize_t offs[MAX_CONTEXT];
    double ctx[MAX_CONTEXT];
    if (!buf) return -2;
    for (int k = 0; k < m->K; k++) offs[k] = (Py_ssize_t)taps[2 * k] * pw + taps[2 * k + 1];
    Py_ssize_t waves = (Py_ssize_t)slope * (h - 1) + w;
    for (Py_ssize_t t = 0; t < waves; t++) {
        Py_ssize_t i_lo = t - (w - 1) > 0 ? (t - (w - 1) + slope - 1) / slope : 0;
        Py_ssize_t i_hi = t / slope < h - 1 ? t / slope : h - 1;
        for (Py_ssize_t i = i_lo; i <= i_hi; i++) {
            Py_ssize_t j = t - slope * i;
            int32_t *at = buf + (i + radius) * pw + j + radius;
            for (int k = 0; k < m->K; k++) ctx[k] = (double)at[offs[k]];
            double centre;
            int32_t s;
            int table = arm_table(m, ctx, &centre);
            if (table < 0 || table >= T->count || rans_symbol(r, T, table, &s)) {
                free(buf);
                return -1;
            }
            double v = clampd(((double)s + centre) * m->store, m->clamp);
            *at = (int32_t)v;
            out[i * w + j] = (float)(v / m->store);
        }
    }
    free(buf);
    return 0;
}

/* -- upsampling and synthesis (float32) --------------------------------------------------------------------- */
static inline Py_ssize_t clampi(Py_ssize_t v, Py_ssize_t hi) { return v < 0 ? 0 : (v > hi ? hi : v); }

/* ×2 along rows of c·h rows of w values into rows of wo ≤ 2w values: the two polyphase halves of the 8 taps
 * k (even outputs k7 k5 k3 k1, odd k6 k4 k2 k0 over the edge-replicated row, as ``network._up2``). */
HOT static void up_rows(const float *x, Py_ssize_t rows, Py_ssize_t w, const float *k, float *out, Py_ssize_t wo) {
    for (Py_ssize_t r = 0; r < rows; r++) {
        const float *s = x + r * w;
        float *d = out + r * wo;
        for (Py_ssize_t o = 0; o < wo; o++) {
            Py_ssize_t i = o >> 1;
            float a = s[clampi(i - 1, w - 1)], b = s[i], c = s[clampi(i + 1, w - 1)];
            d[o] = (o & 1) ? k[6] * a + k[4] * b + k[2] * c + k[0] * s[clampi(i + 2, w - 1)]
                           : k[7] * s[clampi(i - 2, w - 1)] + k[5] * a + k[3] * b + k[1] * c;
        }
    }
}

/* ×2 along columns: planes of h rows (w wide) into planes of ho ≤ 2h rows, the same taps as up_rows. */
HOT static void up_cols(const float *x, Py_ssize_t planes, Py_ssize_t h, Py_ssize_t w, const float *k, float *out,
                    Py_ssize_t ho) {
    for (Py_ssize_t p = 0; p < planes; p++) {
        const float *s = x + p * h * w;
        for (Py_ssize_t o = 0; o < ho; o++) {
            Py_ssize_t i = o >> 1;
            const float *r0, *r1, *r2, *r3;
            float k0, k1, k2, k3;
            if (o & 1) {
                r0 = s + clampi(i - 1, h - 1) * w, r1 = s + i * w, r2 = s + clampi(i + 1, h - 1) * w;
                r3 = s + clampi(i + 2, h - 1) * w, k0 = k[6], k1 = k[4], k2 = k[2], k3 = k[0];
            } else {
                r0 = s + clampi(i - 2, h - 1) * w, r1 = s + clampi(i - 1, h - 1) * w, r2 = s + i * w;
                r3 = s + clampi(i + 1, h - 1) * w, k0 = k[7], k1 = k[5], k2 = k[3], k3 = k[1];
            }
            float *d = out + (p * ho + o) * w;
            for (Py_ssize_t j = 0; j < w; j++) d[j] = k0 * r0[j] + k1 * r1[j] + k2 * r2[j] + k3 * r3[j];
        }
    }
}

/* The G grids (finest first, concatenated planes) brought to the finest size, coarsest first: (G, h0, w0). */
static float *upsample(const float *grids, const Py_ssize_t *hs, const Py_ssize_t *ws, int G, const float *up) {
    Py_ssize_t base[8];
    base[0] = 0;
    for (int g = 1; g < G; g++) base[g] = base[g - 1] + hs[g - 1] * ws[g - 1];
    Py_ssize_t hc = hs[G - 1], wc = ws[G - 1];
    float *acc = malloc(sizeof(float) * (size_t)(hc * wc));
    if (!acc) return NULL;
    memcpy(acc, grids + base[G - 1], sizeof(float) * (size_t)(hc * wc));
    for (int stage = 0, c = 1; stage < G - 1; stage++, c++) {
        int g = G - 2 - stage;
        Py_ssize_t h = hs[g], w = ws[g];
        float *rows = malloc(sizeof(float) * (size_t)(c * hc * w));
        float *next = malloc(sizeof(float) * (size_t)((c + 1) * h * w));
        if (!rows || !next) {
            free(acc), free(rows), free(next);
            return NULL;
        }
        up_rows(acc, c * hc, wc, up + 8 * stage, rows, w);
        up_cols(rows, c, hc, w, up + 8 * stage, next, h);
        memcpy(next + c * h * w, grids + base[g], sizeof(float) * (size_t)(h * w));
        free(acc), free(rows);
        acc = next, hc = h, wc = w;
    }
    return acc;
}

/* Synthesis weights, packed in ``FittedDecoder.tensors()`` order from syn_w1 on. */
typedef struct {
    int G, S;
    const float *w1, *b1, *w2, *b2, *w3, *b3, *w4, *b4;
} Syn;

/* 1×1 layers: x = w2·relu(w1·z + b1) + b2, over blocks of pixels (the inner loops run along pixels). */
HOT static void syn_pointwise(const Syn *n, const float *z, Py_ssize_t N, float *x) {
    enum { B = 256 };
    float hid[MAX_HIDDEN][B];
    for (Py_ssize_t p0 = 0; p0 < N; p0 += B) {
        Py_ssize_t nb = N - p0 < B ? N - p0 : B;
        for (int o = 0; o < n->S; o++) {
            float *hb = hid[o];
            for (Py_ssize_t p = 0; p < nb; p++) hb[p] = 0;
            for (int g = 0; g < n->G; g++) {
                float w = n->w1[o * n->G + g];
                const float *zg = z + g * N + p0;
                for (Py_ssize_t p = 0; p < nb; p++) hb[p] += w * zg[p];
            }
            for (Py_ssize_t p = 0; p < nb; p++) {
                float v = hb[p] + n->b1[o];
                hb[p] = v < 0 ? 0 : v; /* relu, NaN kept as torch keeps it */
            }
        }
        for (int c = 0; c < 3; c++) {
            float *xc = x + c * N + p0;
            for (Py_ssize_t p = 0; p < nb; p++) xc[p] = 0;
            for (int o = 0; o < n->S; o++) {
                float w = n->w2[c * n->S + o];
                for (Py_ssize_t p = 0; p < nb; p++) xc[p] += w * hid[o][p];
            }
            for (Py_ssize_t p = 0; p < nb; p++) xc[p] += n->b2[c];
        }
    }
}

/* out = x + conv3×3(relu?(x)) + b, 3 → 3 channels, replicate padding (a padded copy of the input). */
HOT static int residual_conv(const float *x, Py_ssize_t h, Py_ssize_t w, const float *wt, const float *b, int relu,
                         float *out) {
    Py_ssize_t pw = w + 2, ph = h + 2;
    float *pad = malloc(sizeof(float) * (size_t)(3 * ph * pw)), *acc = malloc(sizeof(float) * (size_t)w);
    if (!pad || !acc) {
        free(pad), free(acc);
        return -2;
    }
    for (int c = 0; c < 3; c++)
        for (Py_ssize_t i = 0; i < ph; i++) {
            const float *s = x + (c * h + clampi(i - 1, h - 1)) * w;
            float *d = pad + (c * ph + i) * pw;
            for (Py_ssize_t j = 0; j < pw; j++) {
                float v = s[clampi(j - 1, w - 1)];
                d[j] = relu && v < 0 ? 0 : v;
            }
        }
    for (int o = 0; o < 3; o++)
        for (Py_ssize_t i = 0; i < h; i++) {
            for (Py_ssize_t j = 0; j < w; j++) acc[j] = 0;
            for (int c = 0; c < 3; c++)
                for (int dy = 0; dy < 3; dy++)
                    for (int dx = 0; dx < 3; dx++) {
                        float k = wt[((o * 3 + c) * 3 + dy) * 3 + dx];
                        const float *s = pad + (c * ph + i + dy) * pw + dx;
                        for (Py_ssize_t j = 0; j < w; j++) acc[j] += k * s[j];
                    }
            const float *xi = x + (o * h + i) * w;
            float *d = out + (o * h + i) * w;
            for (Py_ssize_t j = 0; j < w; j++) d[j] = xi[j] + (acc[j] + b[o]);
        }
    free(pad), free(acc);
    return 0;
}

static int synthesize(const float *grids, const Py_ssize_t *hs, const Py_ssize_t *ws, const float *up,
                      const Syn *n, float *out) {
    Py_ssize_t h = hs[0], w = ws[0], N = h * w;
    float *z = upsample(grids, hs, ws, n->G, up);
    float *x = malloc(sizeof(float) * (size_t)(3 * N)), *x1 = malloc(sizeof(float) * (size_t)(3 * N));
    int rc = -2;
    if (z && x && x1) {
        syn_pointwise(n, z, N, x);
        free(z), z = NULL;
        rc = residual_conv(x, h, w, n->w3, n->b3, 0, x1);
        if (!rc) rc = residual_conv(x1, h, w, n->w4, n->b4, 1, out);
    }
    free(z), free(x), free(x1);
    return rc;
}

/* -- Python bindings ---------------------------------------------------------------------------------------- */
static int need(Py_buffer *b, Py_ssize_t bytes, const char *what) {
    if (b->len < bytes) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, %zd needed", what, b->len, bytes);
        return -1;
    }
    return 0;
}

static int read_tables(PyObject *tup, Py_buffer bufs[4], Tables *T) {
    if (!PyArg_ParseTuple(tup, "y*y*y*y*", &bufs[0], &bufs[1], &bufs[2], &bufs[3])) return -1;
    T->cdf = bufs[0].buf, T->start = bufs[1].buf, T->len = bufs[2].buf, T->offset = bufs[3].buf;
    T->count = bufs[2].len / (Py_ssize_t)sizeof(int32_t);
    return 0;
}

static void release(Py_buffer *bufs, int n) {
    for (int i = 0; i < n; i++)
        if (bufs[i].obj) PyBuffer_Release(&bufs[i]);
}

static int rans_error(int rc) {
    if (rc == -1) PyErr_SetString(PyExc_ValueError, CORRUPT);
    else if (rc) PyErr_NoMemory();
    return rc;
}

static PyObject *py_symbols(PyObject *self, PyObject *args) {
    Py_buffer data = {0}, idx = {0}, out = {0}, tb[4] = {{0}};
    PyObject *tables;
    Tables T = {0};
    if (!PyArg_ParseTuple(args, "y*Oy*w*", &data, &tables, &idx, &out)) return NULL;
    int rc = read_tables(tables, tb, &T);
    Py_ssize_t n = idx.len / (Py_ssize_t)sizeof(int32_t);
    if (!rc) rc = need(&out, n * (Py_ssize_t)sizeof(int32_t), "symbols out");
    const int32_t *ix = idx.buf;
    for (Py_ssize_t i = 0; !rc && i < n; i++)
        if (ix[i] < 0 || ix[i] >= T.count) rc = -1, PyErr_SetString(PyExc_ValueError, "table index out of range");
    if (!rc) {
        Rans r;
        Py_BEGIN_ALLOW_THREADS rans_init(&r, data.buf, data.len);
        for (Py_ssize_t i = 0; !rc && i < n; i++) rc = rans_symbol(&r, &T, ix[i], (int32_t *)out.buf + i);
        Py_END_ALLOW_THREADS rc = rans_error(rc);
    }
    release(tb, 4), PyBuffer_Release(&data), PyBuffer_Release(&idx), PyBuffer_Release(&out);
    if (rc) return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_grids(PyObject *self, PyObject *args) {
    Py_buffer data = {0}, arm = {0}, taps = {0}, out = {0}, tb[4] = {{0}};
    PyObject *tables, *sizes;
    Tables T = {0};
    Arm m = {0};
    int K, A, radius, slope;
    if (!PyArg_ParseTuple(args, "y*O(ii)y*(ddd)(dddddddd)y*iiOw*", &data, &tables, &K, &A, &arm, &m.s1, &m.s2,
                          &m.s3, &m.clamp, &m.fractions, &m.half, &m.one, &m.log_b0, &m.half_step, &m.step,
                          &m.last_scale, &taps, &radius, &slope, &sizes, &out))
        return NULL;
    m.store = m.one;
    int rc = read_tables(tables, tb, &T);
    Py_ssize_t G = rc ? 0 : PyList_Check(sizes) ? PyList_GET_SIZE(sizes) : -1;
    Py_ssize_t hw[16], total = 0;
    if (!rc && (G < 1 || G > 8 || K < 1 || K > MAX_CONTEXT || A < 1 || A > MAX_HIDDEN || slope < 1))
        rc = -1, PyErr_SetString(PyExc_ValueError, "grids: sizes out of range");
    for (Py_ssize_t g = 0; !rc && g < G; g++) {
        if (!PyArg_ParseTuple(PyList_GET_ITEM(sizes, g), "nn", &hw[2 * g], &hw[2 * g + 1])) rc = -1;
        else total += hw[2 * g] * hw[2 * g + 1];
    }
    Py_ssize_t params = (Py_ssize_t)A * K + A + A * A + A + 2 * A + 2;
    if (!rc) rc = need(&arm, params * (Py_ssize_t)sizeof(double), "arm");
    if (!rc) rc = need(&taps, 2 * K * (Py_ssize_t)sizeof(int32_t), "taps");
    if (!rc) rc = need(&out, total * (Py_ssize_t)sizeof(float), "grids out");
    if (!rc) {
        const double *p = arm.buf;
        m.K = K, m.A = A;
        m.w1t = p, m.b1 = p + A * K, m.w2t = m.b1 + A, m.b2 = m.w2t + A * A, m.w3t = m.b2 + A, m.b3 = m.w3t + 2 * A;
        Rans r;
        float *o = out.buf;
        Py_BEGIN_ALLOW_THREADS rans_init(&r, data.buf, data.len);
        for (Py_ssize_t g = 0; !rc && g < G; g++) {
            rc = walk_grid(&r, &T, &m, taps.buf, radius, slope, (int)hw[2 * g], (int)hw[2 * g + 1], o);
            o += hw[2 * g] * hw[2 * g + 1];
        }
        Py_END_ALLOW_THREADS rc = rans_error(rc);
    }
    release(tb, 4), PyBuffer_Release(&data), PyBuffer_Release(&arm), PyBuffer_Release(&taps), PyBuffer_Release(&out);
    if (rc) return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_image(PyObject *self, PyObject *args) {
    Py_buffer grids = {0}, up = {0}, syn = {0}, out = {0};
    PyObject *sizes;
    Syn n;
    if (!PyArg_ParseTuple(args, "y*Oy*iy*w*", &grids, &sizes, &up, &n.S, &syn, &out)) return NULL;
    Py_ssize_t hs[8], ws[8], total = 0;
    int rc = 0;
    n.G = PyList_Check(sizes) ? (int)PyList_GET_SIZE(sizes) : -1;
    if (n.G < 1 || n.G > 8 || n.S < 1 || n.S > MAX_HIDDEN)
        rc = -1, PyErr_SetString(PyExc_ValueError, "image: sizes out of range");
    for (int g = 0; !rc && g < n.G; g++) {
        if (!PyArg_ParseTuple(PyList_GET_ITEM(sizes, g), "nn", &hs[g], &ws[g])) rc = -1;
        else total += hs[g] * ws[g];
    }
    Py_ssize_t params = (Py_ssize_t)n.S * n.G + n.S + 3 * n.S + 3 + 2 * (81 + 3);
    if (!rc) rc = need(&grids, total * (Py_ssize_t)sizeof(float), "grids");
    if (!rc) rc = need(&up, 8 * (n.G > 1 ? n.G - 1 : 1) * (Py_ssize_t)sizeof(float), "up");
    if (!rc) rc = need(&syn, params * (Py_ssize_t)sizeof(float), "syn");
    if (!rc) rc = need(&out, 3 * hs[0] * ws[0] * (Py_ssize_t)sizeof(float), "image out");
    if (!rc) {
        const float *p = syn.buf;
        n.w1 = p, n.b1 = p + n.S * n.G, n.w2 = n.b1 + n.S, n.b2 = n.w2 + 3 * n.S;
        n.w3 = n.b2 + 3, n.b3 = n.w3 + 81, n.w4 = n.b3 + 3, n.b4 = n.w4 + 81;
        Py_BEGIN_ALLOW_THREADS rc = synthesize(grids.buf, hs, ws, up.buf, &n, out.buf);
        Py_END_ALLOW_THREADS if (rc) PyErr_NoMemory();
    }
    PyBuffer_Release(&grids), PyBuffer_Release(&up), PyBuffer_Release(&syn), PyBuffer_Release(&out);
    if (rc) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"symbols", py_symbols, METH_VARARGS, "symbols(data, tables, indexes, out): decode one symbol per index"},
    {"grids", py_grids, METH_VARARGS, "grids(data, tables, (K, A), arm, scales, rule, taps, radius, slope, sizes, out)"},
    {"image", py_image, METH_VARARGS, "image(grids, sizes, up, syn_hidden, syn, out): float32 (3, h, w)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_wavefront", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__wavefront(void) { return PyModule_Create(&module); }

/* One GRU time step's element-wise work, forward and backward, fused into one pass each (and the
   LN-LSTM's, further down).

   rnnkit/gru_sequence.py runs the matrix products with torch (oneDNN, AMX in bf16) and calls
   these for everything between them. Done with torch ops, a step is a dozen small ops and
   bf16<->fp32 casts, each a separate pass over memory with its own dispatch; here it is one
   loop that reads each value once. The equations are in gru_sequence.py's docstring.

   The functions take raw addresses of contiguous float32 (and, for the products' operands,
   bf16) buffers: gru_sequence.py allocates every buffer and checks dtypes and layout, so this
   file knows nothing of tensors and needs no torch headers. This is an optional extension:
   without a C compiler rnnkit runs the same steps as torch ops.

   The same module holds the whole time loop of the minimal gated cells (minGRU, minLSTM) for
   rnnkit/nn/scan_sequence.py, further down; without it those cells run their log-space scan. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(_MSC_VER) && !defined(restrict)
#define restrict __restrict
#endif

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__)
/* One build runs everywhere; each machine gets the widest vectors it has (glibc's ifunc picks). */
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2,fma", "default")))
#else
#define VECTOR_CLONES
#endif

static inline float bits_to_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t float_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float bf16_to_float(uint16_t v) { return bits_to_float((uint32_t)v << 16); }

/* Round to nearest even, as torch's casts do; NaN stays NaN. */
static inline uint16_t float_to_bf16(float f) {
    uint32_t u = float_to_bits(f);
    uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    return (uint16_t)(f != f ? (u >> 16) | 0x40u : rounded);
}

/* exp(x) to about 2 ulp: x = k ln2 + r with |r| <= ln2/2, exp(r) by its Taylor series to r^7, 2^k
   from the exponent bits. Branch-free so that the compiler vectorises the loops that call it. */
static inline float fast_exp(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float kf = x * 1.44269504088896341f + shifter;
    int32_t k = (int32_t)(float_to_bits(kf) - float_to_bits(shifter));
    kf -= shifter;
    float r = x - kf * 0.693145751953125f - kf * 1.428606765330187045e-06f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666668e-2f
              + r * (8.3333333e-3f + r * (1.3888889e-3f + r * 1.9841270e-4f))))));
    /* 2^k split in two factors so that k = 128 (x near 88) does not overflow the exponent. */
    int32_t k1 = k >> 1;
    return p * bits_to_float((uint32_t)(k1 + 127) << 23) * bits_to_float((uint32_t)(k - k1 + 127) << 23);
}

static inline float sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

static inline float tanh_(float x) {
    float e = fast_exp(-2.0f * fabsf(x));
    return copysignf((1.0f - e) / (1.0f + e), x);
}

static inline void widen(float *restrict to, const uint16_t *restrict from, Py_ssize_t count) {
    for (Py_ssize_t i = 0; i < count; i++) to[i] = bf16_to_float(from[i]);
}

static inline void narrow(uint16_t *restrict to, const float *restrict from, Py_ssize_t count) {
    for (Py_ssize_t i = 0; i < count; i++) to[i] = float_to_bf16(from[i]);
}

/* One batch row of the forward step; h_next = n + z (h_prev - n) is h_t. */
static inline void forward_row(Py_ssize_t H, const float *restrict in, const float *restrict rec,
                               const float *restrict b_hn, const float *restrict h_prev, float *restrict r,
                               float *restrict z, float *restrict hn, float *restrict n, float *restrict h_next) {
    for (Py_ssize_t j = 0; j < H; j++) {
        float rj = sigmoid(in[j] + rec[j]);
        float zj = sigmoid(in[H + j] + rec[H + j]);
        float hnj = rec[2 * H + j] + b_hn[j];
        float nj = tanh_(in[2 * H + j] + rj * hnj);
        r[j] = rj, z[j] = zj, hn[j] = hnj, n[j] = nj;
        h_next[j] = nj + zj * (h_prev[j] - nj);
    }
}

/* Forward at step t. gates_in (T,B,3H): input products with their biases (r and z also carry
   b_hr, b_hz); recurrent (B,3H): h_{t-1} W_hh^T, bf16 or float; b_hn (H). Writes rz (T,B,2H),
   n and hidden_n (T,B,H), states[t+1] (T+1,B,H) and, when given, its bf16 copy states_c[t+1].
   scratch holds 3H floats (for the widened bf16 product). */
VECTOR_CLONES
static void forward_step(Py_ssize_t B, Py_ssize_t H, Py_ssize_t t, const float *gates_in, const void *recurrent,
                         int recurrent_bf16, const float *b_hn, float *rz, float *n, float *hidden_n,
                         float *states, uint16_t *states_c, float *scratch) {
    for (Py_ssize_t b = 0; b < B; b++) {
        const float *rec = (const float *)recurrent + b * 3 * H;
        if (recurrent_bf16) {
            widen(scratch, (const uint16_t *)recurrent + b * 3 * H, 3 * H);
            rec = scratch;
        }
        const Py_ssize_t row = (t * B + b) * H;
        float *r = rz + (t * B + b) * 2 * H;
        forward_row(H, gates_in + (t * B + b) * 3 * H, rec, b_hn, states + row, r, r + H, hidden_n + row, n + row,
                    states + row + B * H);
        if (states_c) narrow(states_c + row + B * H, states + row + B * H, H);
    }
}

/* One batch row of the backward step: d is the gradient reaching h_t; leaves d z in d. */
static inline void backward_row(Py_ssize_t H, float *restrict d, const float *restrict r, const float *restrict z,
                                const float *restrict n, const float *restrict hn, const float *restrict h_prev,
                                float *restrict d_n_pre, float *restrict d_r, float *restrict d_z,
                                float *restrict d_hn) {
    for (Py_ssize_t j = 0; j < H; j++) {
        float dj = d[j], nj = n[j], zj = z[j], rj = r[j];
        float dnp = dj * (1.0f - zj) * (1.0f - nj * nj);
        d_n_pre[j] = dnp;
        d_hn[j] = dnp * rj;
        d_r[j] = dnp * hn[j] * rj * (1.0f - rj);
        d_z[j] = dj * (h_prev[j] - nj) * zj * (1.0f - zj);
        d[j] = dj * zj;
    }
}

static inline void add_into(float *restrict to, const float *restrict from, Py_ssize_t count) {
    for (Py_ssize_t i = 0; i < count; i++) to[i] += from[i];
}

static inline void add_bf16_into(float *restrict to, const uint16_t *restrict from, Py_ssize_t count) {
    for (Py_ssize_t i = 0; i < count; i++) to[i] += bf16_to_float(from[i]);
}

/* Backward at step t, from T-1 down to 0. dh (B,H) holds the carried part of the gradient
   reaching h_t (dh_{t+1} z_{t+1}); the step adds the recurrent product of step t+1
   (product (B,H), bf16 or float; NULL at t = T-1) and the output's gradient d_out[t] (NULL if
   none). Writes d_n_pre (T,B,H), d_hidden = [d r_pre, d z_pre, r d n_pre] (T,B,3H) and, when
   given, its bf16 copy, and leaves dh_t z_t in dh for the next step. */
VECTOR_CLONES
static void backward_step(Py_ssize_t B, Py_ssize_t H, Py_ssize_t t, float *dh, const void *product,
                          int product_bf16, const float *d_out, const float *rz, const float *n,
                          const float *hidden_n, const float *states, float *d_n_pre, float *d_hidden,
                          uint16_t *d_hidden_c) {
    for (Py_ssize_t b = 0; b < B; b++) {
        const Py_ssize_t row = (t * B + b) * H;
        float *d = dh + b * H;
        if (product && product_bf16) add_bf16_into(d, (const uint16_t *)product + b * H, H);
        else if (product) add_into(d, (const float *)product + b * H, H);
        if (d_out) add_into(d, d_out + row, H);
        const float *r = rz + (t * B + b) * 2 * H;
        float *d_r = d_hidden + (t * B + b) * 3 * H;
        backward_row(H, d, r, r + H, n + row, hidden_n + row, states + row, d_n_pre + row, d_r, d_r + H,
                     d_r + 2 * H);
        if (d_hidden_c) narrow(d_hidden_c + (t * B + b) * 3 * H, d_r, 3 * H);
    }
}

/* ---- Layer-normalised LSTM: rnnkit/nn/lnlstm_sequence.py -----------------------------------------

   One step's element-wise work between the matrix products, forward and backward, one call each;
   the equations are in lnlstm_sequence.py's docstring. Gates are stacked i, f, g, o. */

/* Sum of a row, in sixteen partial sums so that the compiler vectorises it. */
static inline float row_sum(const float *restrict x, Py_ssize_t n) {
    float acc[16] = {0};
    Py_ssize_t j = 0;
    for (; j + 16 <= n; j += 16)
        for (int k = 0; k < 16; k++) acc[k] += x[j + k];
    float s = 0.0f;
    for (int k = 0; k < 16; k++) s += acc[k];
    for (; j < n; j++) s += x[j];
    return s;
}

static inline float row_dot(const float *restrict x, const float *restrict y, Py_ssize_t n) {
    float acc[16] = {0};
    Py_ssize_t j = 0;
    for (; j + 16 <= n; j += 16)
        for (int k = 0; k < 16; k++) acc[k] += x[j + k] * y[j + k];
    float s = 0.0f;
    for (int k = 0; k < 16; k++) s += acc[k];
    for (; j < n; j++) s += x[j] * y[j];
    return s;
}

/* out = (z - mean) / sqrt(var + 1e-5) over n values (biased variance, as torch's layer_norm); returns the
   reciprocal standard deviation. out may be z. */
static inline float normalise(const float *z, float *out, Py_ssize_t n, float *restrict centred) {
    const float mean = row_sum(z, n) / (float)n;
    for (Py_ssize_t j = 0; j < n; j++) centred[j] = z[j] - mean;
    const float rstd = 1.0f / sqrtf(row_dot(centred, centred, n) / (float)n + 1e-5f);
    for (Py_ssize_t j = 0; j < n; j++) out[j] = centred[j] * rstd;
    return rstd;
}

/* The layer norm's backward in place: d_hat (the gradient reaching z_hat) becomes the one reaching z. */
static inline void normalise_backward(float *restrict d, const float *restrict z_hat, float rstd, Py_ssize_t n) {
    const float mean_d = row_sum(d, n) / (float)n, mean_dz = row_dot(d, z_hat, n) / (float)n;
    for (Py_ssize_t j = 0; j < n; j++) d[j] = (d[j] - mean_d - z_hat[j] * mean_dz) * rstd;
}

/* Forward at step t. recurrent (B,4H): h_{t-1} W_hh^T, bf16 or float; u_shifted (T,B,4H): the input part
   plus the recurrent norm's shift. Writes gates (T,B,4H: sigma(i), sigma(f), tanh(g), sigma(o)), a_hat
   (T,B,4H), c_hat and tanh_n (T,B,H), rstd (T,B,2), h[t+1] and c[t+1] (T+1,B,H) and, when given, h's
   bf16 copy h_c[t+1]. scratch holds 8H floats. */
VECTOR_CLONES
static void lnlstm_forward_step(Py_ssize_t B, Py_ssize_t H, Py_ssize_t t, const void *recurrent, int recurrent_bf16,
                                float *scratch, const float *gain_hh, const float *gain_c, const float *shift_c,
                                const float *u_shifted, float *gates, float *a_hat, float *c_hat, float *tanh_n,
                                float *rstd, float *h, uint16_t *h_c, float *c) {
    const Py_ssize_t G = 4 * H;
    float *rec = scratch, *centred = scratch + G;
    for (Py_ssize_t b = 0; b < B; b++) {
        const Py_ssize_t row = (t * B + b) * H, grow = (t * B + b) * G;
        if (recurrent_bf16) widen(rec, (const uint16_t *)recurrent + b * G, G);
        else memcpy(rec, (const float *)recurrent + b * G, G * sizeof(float));
        float *ah = a_hat + grow, *gt = gates + grow;
        rstd[(t * B + b) * 2] = normalise(rec, ah, G, centred);
        const float *us = u_shifted + grow;
        for (Py_ssize_t j = 0; j < 2 * H; j++) gt[j] = sigmoid(us[j] + gain_hh[j] * ah[j]);
        for (Py_ssize_t j = 2 * H; j < 3 * H; j++) gt[j] = tanh_(us[j] + gain_hh[j] * ah[j]);
        for (Py_ssize_t j = 3 * H; j < G; j++) gt[j] = sigmoid(us[j] + gain_hh[j] * ah[j]);
        const float *c_prev = c + row;
        float *c_next = c + row + B * H;
        for (Py_ssize_t k = 0; k < H; k++) c_next[k] = gt[H + k] * c_prev[k] + gt[k] * gt[2 * H + k];
        float *ch = c_hat + row, *tn = tanh_n + row, *h_next = h + row + B * H;
        rstd[(t * B + b) * 2 + 1] = normalise(c_next, ch, H, centred);
        for (Py_ssize_t k = 0; k < H; k++) {
            tn[k] = tanh_(gain_c[k] * ch[k] + shift_c[k]);
            h_next[k] = gt[3 * H + k] * tn[k];
        }
        if (h_c) narrow(h_c + row + B * H, h_next, H);
    }
}

/* Backward at step t, from T-1 down to 0. dh (B,H) receives the gradient reaching h_t: the recurrent
   product of step t+1 (product (B,H), W_hh^T d_a[t+1], bf16 or float; NULL at t = T-1) plus the output's
   d_h[t] (NULL if none). dc (B,H) holds the gradient reaching c_t from step t+1 (f_{t+1} dc_{t+1}); the
   step adds d_c[t] (NULL if none) and leaves f_t dc_t there. Writes d_pre (the gates' pre-activations',
   T,B,4H), d_n (T,B,H), d_a (the recurrent product's, T,B,4H) and, when given, its bf16 copy d_a_c. */
VECTOR_CLONES
static void lnlstm_backward_step(Py_ssize_t B, Py_ssize_t H, Py_ssize_t t, float *dh, float *dc, const void *product,
                                 int product_bf16, const float *d_h, const float *d_c, const float *gain_hh,
                                 const float *gain_c, const float *gates, const float *a_hat, const float *c_hat,
                                 const float *tanh_n, const float *rstd, const float *c, float *d_pre, float *d_n,
                                 float *d_a, uint16_t *d_a_c) {
    const Py_ssize_t G = 4 * H;
    for (Py_ssize_t b = 0; b < B; b++) {
        const Py_ssize_t row = (t * B + b) * H, grow = (t * B + b) * G;
        float *d = dh + b * H, *dcb = dc + b * H;
        if (product && product_bf16) for (Py_ssize_t k = 0; k < H; k++) d[k] = bf16_to_float(((const uint16_t *)product)[b * H + k]);
        else if (product) memcpy(d, (const float *)product + b * H, H * sizeof(float));
        else memset(d, 0, H * sizeof(float));
        if (d_h) add_into(d, d_h + row, H);
        if (d_c) add_into(dcb, d_c + row, H);
        const float *gt = gates + grow, *tn = tanh_n + row, *ch = c_hat + row, *c_prev = c + row;
        float *dp = d_pre + grow, *dn = d_n + row, *da = d_a + grow;
        /* the cell norm's output, then (in da's first H, as scratch) the gradient reaching c_hat */
        for (Py_ssize_t k = 0; k < H; k++) {
            float o = gt[3 * H + k], dk = d[k];
            dp[3 * H + k] = dk * tn[k] * o * (1.0f - o);
            dn[k] = dk * o * (1.0f - tn[k] * tn[k]);
            da[k] = dn[k] * gain_c[k];
        }
        normalise_backward(da, ch, rstd[(t * B + b) * 2 + 1], H);
        for (Py_ssize_t k = 0; k < H; k++) {
            float i = gt[k], f = gt[H + k], g = gt[2 * H + k];
            float dck = dcb[k] + da[k];
            dp[k] = dck * g * i * (1.0f - i);
            dp[H + k] = dck * c_prev[k] * f * (1.0f - f);
            dp[2 * H + k] = dck * i * (1.0f - g * g);
            dcb[k] = dck * f;
        }
        for (Py_ssize_t j = 0; j < G; j++) da[j] = dp[j] * gain_hh[j];
        normalise_backward(da, a_hat + grow, rstd[(t * B + b) * 2], G);
        if (d_a_c) narrow(d_a_c + grow, da, G);
    }
}

/* ---- Minimal gated cells (minGRU, minLSTM): rnnkit/nn/scan_sequence.py --------------------------

   Their gates read the input only, so a layer-direction is h_t = a_t h_{t-1} + b_t, element by
   element, with a_t and b_t functions of the input projection xw_t alone. scan_forward runs the
   whole time loop in one call; scan_backward runs the reverse loop, recomputing a_t, b_t from xw
   rather than storing them. The equations (and their derivatives) are in scan_sequence.py's
   docstring and each cell's docstring in cells.py; a cell's kind is its index in SCAN_KINDS. */

enum { SCAN_MINGRU = 0, SCAN_MINLSTM = 1, SCAN_KIND_COUNT = 2 };
static const char *const SCAN_KINDS[SCAN_KIND_COUNT] = {"mingru", "minlstm"};
static const int SCAN_GATES[SCAN_KIND_COUNT] = {2, 3};

#if defined(__GNUC__) || defined(__clang__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

/* sigmoid(x) and sigmoid(-x) = 1 - sigmoid(x), each to its own relative precision however large |x| is
   (no 1 - s cancellation, and never 0: fast_exp stops at exp(-87)). */
static ALWAYS_INLINE void sigmoid_pair(float x, float *s, float *s_neg) {
    float e = fast_exp(-fabsf(x));
    float r = 1.0f / (1.0f + e), other = e * r;
    *s = x >= 0.0f ? r : other;
    *s_neg = x >= 0.0f ? other : r;
}

/* The candidate's positive activation g(x) = x + 1/2 (x >= 0), sigmoid(x) (x < 0), and g'(x). */
static ALWAYS_INLINE float g_act(float x, float *dg) {
    float s, s_neg;
    sigmoid_pair(x, &s, &s_neg);
    *dg = x >= 0.0f ? 1.0f : s * s_neg;
    return x >= 0.0f ? x + 0.5f : s;
}

/* minGRU, blocks (k, c): z = sigmoid(k), a = 1 - z, b = z g(c). */
static ALWAYS_INLINE void mingru_coefficients(float k, float *a, float *z) {
    sigmoid_pair(k, z, a);
}

/* minLSTM, blocks (kf, ki, c): a = f / (f + i), b = (1 - a) g(c) with f = sigmoid(kf), i = sigmoid(ki).
   With E_f = 1 + exp(-kf), E_i = 1 + exp(-ki): a = E_i / (E_i + E_f), 1 - a = E_f / (E_i + E_f). Both E
   scaled by exp(-m), m = max(0, -kf, -ki), so that every exponential is at most 1 and the larger E is
   at least 1: no overflow, no 0/0 when both gates are saturated shut. */
static ALWAYS_INLINE void minlstm_coefficients(float kf, float ki, float *a, float *one_minus_a) {
    float u = -kf, v = -ki;
    float m = u > v ? u : v;
    m = m > 0.0f ? m : 0.0f;
    float em = fast_exp(-m), ef = em + fast_exp(u - m), ei = em + fast_exp(v - m);
    float inv = 1.0f / (ef + ei);
    *a = ei * inv;
    *one_minus_a = ef * inv;
}

/* One batch row of step t forward: x the row of xw (G*H), h_prev and h (H). */
static ALWAYS_INLINE void scan_forward_row(int kind, Py_ssize_t H, const float *restrict x,
                                           const float *restrict h_prev, float *restrict h) {
    if (kind == SCAN_MINGRU) {
        for (Py_ssize_t j = 0; j < H; j++) {
            float a, z, dg;
            mingru_coefficients(x[j], &a, &z);
            h[j] = a * h_prev[j] + z * g_act(x[H + j], &dg);
        }
    } else {
        for (Py_ssize_t j = 0; j < H; j++) {
            float a, one_minus_a, dg;
            minlstm_coefficients(x[j], x[H + j], &a, &one_minus_a);
            h[j] = a * h_prev[j] + one_minus_a * g_act(x[2 * H + j], &dg);
        }
    }
}

/* One batch row of step t backward: d holds the gradient carried to h_t from step t+1, d_out the output's;
   writes d xw's row dx and leaves the part carried on to h_{t-1} in d. */
static ALWAYS_INLINE void scan_backward_row(int kind, Py_ssize_t H, const float *restrict x,
                                            const float *restrict h_prev, const float *restrict d_out,
                                            float *restrict d, float *restrict dx) {
    if (kind == SCAN_MINGRU) {
        for (Py_ssize_t j = 0; j < H; j++) {
            float a, z, dg, dj = d[j] + d_out[j];
            mingru_coefficients(x[j], &a, &z);
            float g = g_act(x[H + j], &dg);
            dx[j] = dj * (g - h_prev[j]) * z * a;
            dx[H + j] = dj * z * dg;
            d[j] = dj * a;
        }
    } else {
        for (Py_ssize_t j = 0; j < H; j++) {
            float a, one_minus_a, dg, f, not_f, i, not_i, dj = d[j] + d_out[j];
            minlstm_coefficients(x[j], x[H + j], &a, &one_minus_a);
            sigmoid_pair(x[j], &f, &not_f);
            sigmoid_pair(x[H + j], &i, &not_i);
            float g = g_act(x[2 * H + j], &dg);
            float d_a = dj * (h_prev[j] - g) * a * one_minus_a;
            dx[j] = d_a * not_f;
            dx[H + j] = -d_a * not_i;
            dx[2 * H + j] = dj * one_minus_a * dg;
            d[j] = dj * a;
        }
    }
}

/* Forward over all T steps: xw (T,B,G*H), h0 (B,H), out (T,B,H). */
static ALWAYS_INLINE void scan_forward_kind(int kind, Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, const float *xw,
                                            const float *h0, float *out) {
    const Py_ssize_t G = SCAN_GATES[kind];
    for (Py_ssize_t t = 0; t < T; t++)
        for (Py_ssize_t b = 0; b < B; b++) {
            const float *h_prev = t > 0 ? out + ((t - 1) * B + b) * H : h0 + b * H;
            scan_forward_row(kind, H, xw + (t * B + b) * G * H, h_prev, out + (t * B + b) * H);
        }
}

/* Backward over all T steps, T-1 down to 0: d_out (T,B,H) the outputs' gradient; dh (B,H) starts as the
   gradient reaching h_{T-1} from after the sequence (zeros) and ends as h0's gradient; writes d_xw (T,B,G*H). */
static ALWAYS_INLINE void scan_backward_kind(int kind, Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, const float *xw,
                                             const float *h0, const float *out, const float *d_out, float *dh,
                                             float *d_xw) {
    const Py_ssize_t G = SCAN_GATES[kind];
    for (Py_ssize_t t = T - 1; t >= 0; t--)
        for (Py_ssize_t b = 0; b < B; b++) {
            const float *h_prev = t > 0 ? out + ((t - 1) * B + b) * H : h0 + b * H;
            scan_backward_row(kind, H, xw + (t * B + b) * G * H, h_prev, d_out + (t * B + b) * H, dh + b * H,
                              d_xw + (t * B + b) * G * H);
        }
}

/* One compiled loop per kind, the kind a constant inside it. */
VECTOR_CLONES
static void scan_forward_mingru(Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, const float *xw, const float *h0,
                                float *out) {
    scan_forward_kind(SCAN_MINGRU, T, B, H, xw, h0, out);
}

VECTOR_CLONES
static void scan_forward_minlstm(Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, const float *xw, const float *h0,
                                 float *out) {
    scan_forward_kind(SCAN_MINLSTM, T, B, H, xw, h0, out);
}

VECTOR_CLONES
static void scan_backward_mingru(Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, const float *xw, const float *h0,
                                 const float *out, const float *d_out, float *dh, float *d_xw) {
    scan_backward_kind(SCAN_MINGRU, T, B, H, xw, h0, out, d_out, dh, d_xw);
}

VECTOR_CLONES
static void scan_backward_minlstm(Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, const float *xw, const float *h0,
                                  const float *out, const float *d_out, float *dh, float *d_xw) {
    scan_backward_kind(SCAN_MINLSTM, T, B, H, xw, h0, out, d_out, dh, d_xw);
}

static PyObject *py_scan_forward(PyObject *self, PyObject *args) {
    int kind;
    Py_ssize_t T, B, H, xw, h0, out;
    if (!PyArg_ParseTuple(args, "innnnnn", &kind, &T, &B, &H, &xw, &h0, &out)) return NULL;
    if (kind < 0 || kind >= SCAN_KIND_COUNT) return PyErr_Format(PyExc_ValueError, "unknown scan kind %d", kind);
    Py_BEGIN_ALLOW_THREADS
    if (kind == SCAN_MINGRU) scan_forward_mingru(T, B, H, (const float *)xw, (const float *)h0, (float *)out);
    else scan_forward_minlstm(T, B, H, (const float *)xw, (const float *)h0, (float *)out);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_scan_backward(PyObject *self, PyObject *args) {
    int kind;
    Py_ssize_t T, B, H, xw, h0, out, d_out, dh, d_xw;
    if (!PyArg_ParseTuple(args, "innnnnnnnn", &kind, &T, &B, &H, &xw, &h0, &out, &d_out, &dh, &d_xw)) return NULL;
    if (kind < 0 || kind >= SCAN_KIND_COUNT) return PyErr_Format(PyExc_ValueError, "unknown scan kind %d", kind);
    Py_BEGIN_ALLOW_THREADS
    if (kind == SCAN_MINGRU)
        scan_backward_mingru(T, B, H, (const float *)xw, (const float *)h0, (const float *)out, (const float *)d_out,
                             (float *)dh, (float *)d_xw);
    else
        scan_backward_minlstm(T, B, H, (const float *)xw, (const float *)h0, (const float *)out, (const float *)d_out,
                              (float *)dh, (float *)d_xw);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_forward_step(PyObject *self, PyObject *args) {
    Py_ssize_t B, H, t, gates_in, recurrent, b_hn, rz, n, hidden_n, states, states_c, scratch;
    int recurrent_bf16;
    if (!PyArg_ParseTuple(args, "nnnnnpnnnnnnn", &B, &H, &t, &gates_in, &recurrent, &recurrent_bf16, &b_hn, &rz,
                          &n, &hidden_n, &states, &states_c, &scratch))
        return NULL;
    forward_step(B, H, t, (const float *)gates_in, (const void *)recurrent, recurrent_bf16, (const float *)b_hn,
                 (float *)rz, (float *)n, (float *)hidden_n, (float *)states, (uint16_t *)states_c,
                 (float *)scratch);
    Py_RETURN_NONE;
}

static PyObject *py_backward_step(PyObject *self, PyObject *args) {
    Py_ssize_t B, H, t, dh, product, d_out, rz, n, hidden_n, states, d_n_pre, d_hidden, d_hidden_c;
    int product_bf16;
    if (!PyArg_ParseTuple(args, "nnnnnpnnnnnnnn", &B, &H, &t, &dh, &product, &product_bf16, &d_out, &rz, &n,
                          &hidden_n, &states, &d_n_pre, &d_hidden, &d_hidden_c))
        return NULL;
    backward_step(B, H, t, (float *)dh, (const void *)product, product_bf16, (const float *)d_out,
                  (const float *)rz, (const float *)n, (const float *)hidden_n, (const float *)states,
                  (float *)d_n_pre, (float *)d_hidden, (uint16_t *)d_hidden_c);
    Py_RETURN_NONE;
}

static PyObject *py_lnlstm_forward_step(PyObject *self, PyObject *args) {
    Py_ssize_t B, H, t, recurrent, scratch, gain_hh, gain_c, shift_c, u_shifted, gates, a_hat, c_hat, tanh_n, rstd,
        h, h_c, c;
    int recurrent_bf16;
    if (!PyArg_ParseTuple(args, "nnnnpnnnnnnnnnnnnn", &B, &H, &t, &recurrent, &recurrent_bf16, &scratch, &gain_hh,
                          &gain_c, &shift_c, &u_shifted, &gates, &a_hat, &c_hat, &tanh_n, &rstd, &h, &h_c, &c))
        return NULL;
    lnlstm_forward_step(B, H, t, (const void *)recurrent, recurrent_bf16, (float *)scratch, (const float *)gain_hh,
                        (const float *)gain_c, (const float *)shift_c, (const float *)u_shifted, (float *)gates,
                        (float *)a_hat, (float *)c_hat, (float *)tanh_n, (float *)rstd, (float *)h,
                        (uint16_t *)h_c, (float *)c);
    Py_RETURN_NONE;
}

static PyObject *py_lnlstm_backward_step(PyObject *self, PyObject *args) {
    Py_ssize_t B, H, t, dh, dc, product, d_h, d_c, gain_hh, gain_c, gates, a_hat, c_hat, tanh_n, rstd, c, d_pre, d_n,
        d_a, d_a_c;
    int product_bf16;
    if (!PyArg_ParseTuple(args, "nnnnnnpnnnnnnnnnnnnnn", &B, &H, &t, &dh, &dc, &product, &product_bf16, &d_h, &d_c,
                          &gain_hh, &gain_c, &gates, &a_hat, &c_hat, &tanh_n, &rstd, &c, &d_pre, &d_n, &d_a, &d_a_c))
        return NULL;
    lnlstm_backward_step(B, H, t, (float *)dh, (float *)dc, (const void *)product, product_bf16, (const float *)d_h,
                         (const float *)d_c, (const float *)gain_hh, (const float *)gain_c, (const float *)gates,
                         (const float *)a_hat, (const float *)c_hat, (const float *)tanh_n, (const float *)rstd,
                         (const float *)c, (float *)d_pre, (float *)d_n, (float *)d_a, (uint16_t *)d_a_c);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"forward_step", py_forward_step, METH_VARARGS,
     "forward_step(B, H, t, gates_in, recurrent, recurrent_bf16, b_hn, rz, n, hidden_n, states, states_c, "
     "scratch)"},
    {"backward_step", py_backward_step, METH_VARARGS,
     "backward_step(B, H, t, dh, product, product_bf16, d_out, rz, n, hidden_n, states, d_n_pre, d_hidden, "
     "d_hidden_c)"},
    {"scan_forward", py_scan_forward, METH_VARARGS, "scan_forward(kind, T, B, H, xw, h0, out)"},
    {"lnlstm_forward_step", py_lnlstm_forward_step, METH_VARARGS,
     "lnlstm_forward_step(B, H, t, recurrent, recurrent_bf16, scratch, gain_hh, gain_c, shift_c, u_shifted, gates, "
     "a_hat, c_hat, tanh_n, rstd, h, h_c, c)"},
    {"lnlstm_backward_step", py_lnlstm_backward_step, METH_VARARGS,
     "lnlstm_backward_step(B, H, t, dh, dc, product, product_bf16, d_h, d_c, gain_hh, gain_c, gates, a_hat, c_hat, "
     "tanh_n, rstd, c, d_pre, d_n, d_a, d_a_c)"},
    {"scan_backward", py_scan_backward, METH_VARARGS, "scan_backward(kind, T, B, H, xw, h0, out, d_out, dh, d_xw)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gru_kernels",
                                    "Fused element-wise GRU steps for rnnkit.nn.gru_sequence (addresses in, no tensors).",
                                    -1, methods};

PyMODINIT_FUNC PyInit__gru_kernels(void) {
    PyObject *m = PyModule_Create(&module), *kinds = PyDict_New();
    if (!m || !kinds) goto fail;
    for (int k = 0; k < SCAN_KIND_COUNT; k++) {
        PyObject *value = PyLong_FromLong(k);
        int failed = !value || PyDict_SetItemString(kinds, SCAN_KINDS[k], value) < 0;
        Py_XDECREF(value);
        if (failed) goto fail;
    }
    /* the scan cells this build has a kernel for, name -> kind (rnnkit.nn.scan_sequence) */
    if (PyModule_AddObject(m, "scan_kinds", kinds) < 0) goto fail;
    return m;
fail:
    Py_XDECREF(kinds);
    Py_XDECREF(m);
    return NULL;
}

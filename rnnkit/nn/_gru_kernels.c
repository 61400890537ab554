/* One GRU time step's element-wise work, forward and backward, fused into one pass each.

   rnnkit/gru_sequence.py runs the matrix products with torch (oneDNN, AMX in bf16) and calls
   these for everything between them. Done with torch ops, a step is a dozen small ops and
   bf16<->fp32 casts, each a separate pass over memory with its own dispatch; here it is one
   loop that reads each value once. The equations are in gru_sequence.py's docstring.

   The functions take raw addresses of contiguous float32 (and, for the products' operands,
   bf16) buffers: gru_sequence.py allocates every buffer and checks dtypes and layout, so this
   file knows nothing of tensors and needs no torch headers. This is an optional extension:
   without a C compiler rnnkit runs the same steps as torch ops. */

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

static PyMethodDef methods[] = {
    {"forward_step", py_forward_step, METH_VARARGS,
     "forward_step(B, H, t, gates_in, recurrent, recurrent_bf16, b_hn, rz, n, hidden_n, states, states_c, "
     "scratch)"},
    {"backward_step", py_backward_step, METH_VARARGS,
     "backward_step(B, H, t, dh, product, product_bf16, d_out, rz, n, hidden_n, states, d_n_pre, d_hidden, "
     "d_hidden_c)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gru_kernels",
                                    "Fused element-wise GRU steps for rnnkit.nn.gru_sequence (addresses in, no tensors).",
                                    -1, methods};

PyMODINIT_FUNC PyInit__gru_kernels(void) { return PyModule_Create(&module); }

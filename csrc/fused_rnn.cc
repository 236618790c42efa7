// lstmjax's fused CPU kernels: the plain LSTM and the GRU (the reset after the matmul, or
// before it: attribute `reset_after`) over whole sequences, as XLA FFI handlers that
// `lstmjax/_fused_kernel.py` registers with JAX.
//
// Layout: everything time-major, as `unroll` hands sequences to its strategies:
//   xs [T, B, I], ys [T, B, H], per-step buffers [T, B, width]; row (t, b) is t * B + b.
// Weights in lstmjax's layout: w_x [I, G*H], w_h [H, G*H], b [G*H]; gate blocks
// LSTM (i, f, g, o), GRU (r, z, n), G = 4 or 3.
//
// Work split: the batch is cut into chunks that run every time step on their own rows
// (independent sequences: no barrier between steps), on XLA's intra-op thread pool.
// Each chunk computes its step's input projection and recurrent product with the small
// matrix kernel below, then the gates in one loop over its rows. The backward pass runs the
// same chunks from the last step to the first; the weight gradients are then large
// products over all rows, split over columns.
//
// Matrix products: our own register-blocked kernel (no BLAS dependency), compiled three times
// (AVX-512, AVX2+FMA, baseline SSE2) and chosen at load from the CPU's features. The input
// projection and the recurrent product of a step read the weights in place (row-major
// panels), so nothing is repacked per step.
//
// Step flags: an optional uint8 [T, B] per call, bit 0 set where the step is real (clear: a
// masked step, which keeps the carry and whose output is the kept h) and bit 1 where the
// sequence restarts from its initial carry before the step (a reset: a new episode or
// document). A restart at t replaces the carry read by step t with (h0, c0) of that row; in
// the backward pass the carry's gradient there flows to dh0 / dc0 instead of to step t - 1,
// and the recurrent weight gradient takes h0, not ys[t - 1], as that step's previous state.
//
// Numerics: no fast-math. float32 gates use the vectorisable exp/tanh below (about 2 ulp; NaN
// and infinities propagate as in the scan: a NaN input gives NaN, sigmoid(+-inf) = 1 or 0,
// tanh(+-inf) = +-1); float64 gates use the C library.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#define LJ_INLINE inline __attribute__((always_inline))

// ------------------------------------------------------------------ vectors and the kernel

template <class T, int VB>
struct Vec {
  typedef T type __attribute__((vector_size(VB)));
  static constexpr int L = VB / sizeof(T);
};

template <class V, class T>
LJ_INLINE V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <class V, class T>
LJ_INLINE void store(T* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}

// C[R, NV*L] (+)= A[R, K] B[K, NV*L]; A(r, k) = A[r*ars + k*aks]; B row-major with ldb.
template <class T, int VB, int R, int NV>
LJ_INLINE void tile(int64_t K, const T* A, int64_t ars, int64_t aks, const T* B, int64_t ldb,
                    T* C, int64_t ldc, bool acc) {
  using V = typename Vec<T, VB>::type;
  constexpr int L = Vec<T, VB>::L;
  V c[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) c[r][v] = acc ? load<V>(C + r * ldc + v * L) : V{};
  for (int64_t k = 0; k < K; ++k) {
    V b[NV];
    for (int v = 0; v < NV; ++v) b[v] = load<V>(B + k * ldb + v * L);
    for (int r = 0; r < R; ++r) {
      const V a = V{} + A[r * ars + k * aks];
      for (int v = 0; v < NV; ++v) c[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) store(C + r * ldc + v * L, c[r][v]);
}

// The columns left over (fewer than one vector): plain loops.
template <class T>
LJ_INLINE void tile_rest(int64_t rows, int64_t cols, int64_t K, const T* A, int64_t ars,
                         int64_t aks, const T* B, int64_t ldb, T* C, int64_t ldc, bool acc) {
  for (int64_t r = 0; r < rows; ++r) {
    T s[64];
    for (int64_t n = 0; n < cols; ++n) s[n] = acc ? C[r * ldc + n] : T(0);
    for (int64_t k = 0; k < K; ++k) {
      const T a = A[r * ars + k * aks];
      for (int64_t n = 0; n < cols; ++n) s[n] += a * B[k * ldb + n];
    }
    for (int64_t n = 0; n < cols; ++n) C[r * ldc + n] = s[n];
  }
}

template <class T, int VB, int MR, int NV>
LJ_INLINE void panel(int64_t M, int64_t K, const T* A, int64_t ars, int64_t aks, const T* B,
                     int64_t ldb, T* C, int64_t ldc, bool acc) {
  int64_t m = 0;
  for (; m + MR <= M; m += MR)
    tile<T, VB, MR, NV>(K, A + m * ars, ars, aks, B, ldb, C + m * ldc, ldc, acc);
  const int64_t left = M - m;
  const T* a = A + m * ars;
  T* c = C + m * ldc;
  if constexpr (MR > 1)
    if (left == 1) tile<T, VB, 1, NV>(K, a, ars, aks, B, ldb, c, ldc, acc);
  if constexpr (MR > 2)
    if (left == 2) tile<T, VB, 2, NV>(K, a, ars, aks, B, ldb, c, ldc, acc);
  if constexpr (MR > 3)
    if (left == 3) tile<T, VB, 3, NV>(K, a, ars, aks, B, ldb, c, ldc, acc);
  static_assert(MR <= 4, "panel handles remainders of up to 3 rows");
}

// C[M, N] (+)= A[M, K] B[K, N]: blocked over K so that a [KC, NR] panel of B stays in L1.
template <class T, int VB, int MR, int NV>
LJ_INLINE void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t ars, int64_t aks,
                    const T* B, int64_t ldb, T* C, int64_t ldc, bool accumulate) {
  constexpr int L = Vec<T, VB>::L, NR = NV * L;
  constexpr int64_t KC = 32768 / (NR * int64_t(sizeof(T)));
  if (K == 0) {
    if (!accumulate)
      for (int64_t m = 0; m < M; ++m) std::fill(C + m * ldc, C + m * ldc + N, T(0));
    return;
  }
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    const int64_t kc = std::min(KC, K - k0);
    const bool acc = accumulate || k0 > 0;
    const T* a = A + k0 * aks;
    const T* b = B + k0 * ldb;
    int64_t n = 0;
    for (; n + NR <= N; n += NR) panel<T, VB, MR, NV>(M, kc, a, ars, aks, b + n, ldb, C + n, ldc, acc);
    for (; n + L <= N; n += L) panel<T, VB, MR, 1>(M, kc, a, ars, aks, b + n, ldb, C + n, ldc, acc);
    for (; n < N; n += 64)
      tile_rest<T>(M, std::min<int64_t>(64, N - n), kc, a, ars, aks, b + n, ldb, C + n, ldc, acc);
  }
}

// ------------------------------------------------------------------ activations

LJ_INLINE float bits_to_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}

LJ_INLINE int32_t float_to_bits(float f) {
  int32_t i;
  std::memcpy(&i, &f, 4);
  return i;
}

// exp(x) for float32, branch-free: x clamped to [-87, 88] (a NaN passes the clamp and the
// result is NaN), x = k ln2 + r with |r| <= ln2/2, e^r by its Taylor polynomial of degree 7
// (truncation error below 1e-8 relative), times 2^k built in the exponent bits.
LJ_INLINE float exp_f32(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float shift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float kf = x * 1.44269504088896341f + shift;
  const int32_t k = float_to_bits(kf) - float_to_bits(shift);
  const float kr = kf - shift;
  float r = x - kr * 0.693145751953125f;  // ln2 split: high part exact in 16 bits
  r = r - kr * 1.42860682030941723212e-6f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * bits_to_float((k + 127) << 23);
}

LJ_INLINE float sigmoid(float x) { return 1.0f / (1.0f + exp_f32(-x)); }

// tanh for float32: odd Taylor polynomial below |x| = 0.3 (error < 1e-8 relative there), else
// (1 - e) / (1 + e) with e = exp(-2|x|) (no cancellation: e < 0.55), with x's sign.
LJ_INLINE float tanh_(float x) {
  const float ax = x < 0.0f ? -x : x;
  const float x2 = x * x;
  float p = -1382.0f / 155925.0f;
  p = p * x2 + 62.0f / 2835.0f;
  p = p * x2 - 17.0f / 315.0f;
  p = p * x2 + 2.0f / 15.0f;
  p = p * x2 - 1.0f / 3.0f;
  const float small = x + x * x2 * p;
  const float e = exp_f32(-2.0f * ax);
  float big = (1.0f - e) / (1.0f + e);
  big = x < 0.0f ? -big : big;
  return ax < 0.3f ? small : big;  // NaN: the comparison fails and big (NaN) is returned
}

LJ_INLINE double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
LJ_INLINE double tanh_(double x) { return std::tanh(x); }

// ------------------------------------------------------------------ the recurrences

constexpr uint8_t kStep = 1, kRestart = 2;  // the step flags' bits (see the top)

// Row `row` (t * B + b) is a masked step: the carry is kept.
LJ_INLINE bool kept(const uint8_t* flags, int64_t row) { return flags && !(flags[row] & kStep); }
// Row `row` restarts from the initial carry before its step.
LJ_INLINE bool restarts(const uint8_t* flags, int64_t row) {
  return flags && (flags[row] & kRestart);
}

// The state row b enters step t with: row b of `init` [B, H] at the start and where the row
// restarts, else row (t - 1, b) of the per-step states `seq` [T, B, H].
template <class T>
LJ_INLINE const T* state_before(const T* init, const T* seq, const uint8_t* flags, int64_t t,
                                int64_t B, int64_t H, int64_t b) {
  return t == 0 || restarts(flags, t * B + b) ? init + b * H : seq + ((t - 1) * B + b) * H;
}

// The previous h of rows [b0, b1) at step t >= 1, for the recurrent product: ys[t - 1], or a
// copy of it in `scratch` [B, H] with h0 in the rows that restart at t (where any does).
template <class T>
LJ_INLINE const T* previous_h(const T* ys, const T* h0, const uint8_t* flags, int64_t t,
                              int64_t B, int64_t H, int64_t b0, int64_t b1, T* scratch) {
  bool any = false;
  for (int64_t b = b0; flags && b < b1; ++b) any |= restarts(flags, t * B + b);
  if (!any) return ys + ((t - 1) * B + b0) * H;
  for (int64_t b = b0; b < b1; ++b)
    std::memcpy(scratch + b * H, state_before(h0, ys, flags, t, B, H, b), sizeof(T) * H);
  return scratch + b0 * H;
}

// The restarts' gradients, collected apart during the sweep: acc += run, run = 0 (rows of H).
template <class T>
LJ_INLINE void move_to(T* acc, T* run, int64_t H) {
  for (int64_t j = 0; j < H; ++j) acc[j] += run[j];
  std::fill(run, run + H, T(0));
}

template <class T>
struct LstmFwd {
  int64_t T_, B, I, H;
  const T *x, *wx, *wh, *b, *peep, *h0, *c0;  // peep: [3, H] (i, f, o), or nullptr: none
  T *ys, *hT, *cT;
  T* acts;  // [T, B, 4H] (i, f, g, o) when training, else nullptr
  T* cs;    // [T, B, H] when training, else nullptr
  T* z;     // scratch [B, 4H]
  T* c;     // scratch [B, H]: the running cell state (inference)
  T* hr;    // scratch [B, H]: the previous h with the restarts' h0 (with flags)
  const uint8_t* flags;  // [T, B] step flags (see the top), or nullptr: every step real
};

// One row's step from its pre-activations zr (without the bias b): c' = f c + i g,
// h' = o tanh(c'); with peepholes (PEEP) the gates i and f also see c, and o sees c'.
template <class T, bool PEEP>
LJ_INLINE void lstm_row(int64_t H, const T* zr, const T* bb, const T* peep, const T* cp, T* cn,
                        T* h, T* act) {
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    T zi = zr[j] + bb[j], zf = zr[H + j] + bb[H + j], zo = zr[3 * H + j] + bb[3 * H + j];
    if constexpr (PEEP) {
      zi += peep[j] * cp[j];
      zf += peep[H + j] * cp[j];
    }
    const T i = sigmoid(zi);
    const T f = sigmoid(zf);
    const T g = tanh_(zr[2 * H + j] + bb[2 * H + j]);
    const T cc = f * cp[j] + i * g;
    if constexpr (PEEP) zo += peep[2 * H + j] * cc;
    const T o = sigmoid(zo);
    cn[j] = cc;
    h[j] = o * tanh_(cc);
    if (act) {
      act[j] = i;
      act[H + j] = f;
      act[2 * H + j] = g;
      act[3 * H + j] = o;
    }
  }
}

template <class T, int VB, int MR, int NV>
LJ_INLINE void lstm_forward(const LstmFwd<T>& a, int64_t b0, int64_t b1) {
  const int64_t B = a.B, H = a.H, G = 4 * H, I = a.I, rows = b1 - b0;
  const bool train = a.acts != nullptr;
  T* z = a.z + b0 * G;
  for (int64_t t = 0; t < a.T_; ++t) {
    const T* xt = a.x + (t * B + b0) * I;
    const T* hp =
        t == 0 ? a.h0 + b0 * H : previous_h(a.ys, a.h0, a.flags, t, B, H, b0, b1, a.hr);
    gemm<T, VB, MR, NV>(rows, G, I, xt, I, 1, a.wx, G, z, G, false);
    gemm<T, VB, MR, NV>(rows, G, H, hp, H, 1, a.wh, G, z, G, true);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t bi = b0 + r, row = t * B + bi;
      const T* zr = z + r * G;
      const T* cp = train ? state_before(a.c0, a.cs, a.flags, t, B, H, bi)
                    : t == 0 || restarts(a.flags, row) ? a.c0 + bi * H
                                                       : a.c + bi * H;  // the running c
      T* cn = train ? a.cs + row * H : a.c + bi * H;
      T* h = a.ys + row * H;
      if (kept(a.flags, row)) {  // a masked step: the carry is kept
        std::memcpy(h, hp + r * H, sizeof(T) * H);
        if (cn != cp) std::memcpy(cn, cp, sizeof(T) * H);
        continue;
      }
      T* act = train ? a.acts + row * G : nullptr;
      if (a.peep)
        lstm_row<T, true>(H, zr, a.b, a.peep, cp, cn, h, act);
      else
        lstm_row<T, false>(H, zr, a.b, nullptr, cp, cn, h, act);
    }
  }
  for (int64_t bi = b0; bi < b1; ++bi) {
    const int64_t last = (a.T_ - 1) * B + bi;
    const T* h = a.T_ == 0 ? a.h0 + bi * H : a.ys + last * H;
    const T* c = a.T_ == 0 ? a.c0 + bi * H : (train ? a.cs + last * H : a.c + bi * H);
    std::memcpy(a.hT + bi * H, h, sizeof(T) * H);
    std::memcpy(a.cT + bi * H, c, sizeof(T) * H);
  }
}

template <class T>
struct LstmBwd {
  int64_t T_, B, I, H;
  const T *x, *whT, *h0, *c0, *ys, *acts, *cs, *dys;  // whT: W_h transposed [4H, H]; dys or null
  const T* peep;  // as in LstmFwd
  T *dh, *dc;  // running dh, dc: start as dhT, dcT, end as dh0, dc0 (less the restarts')
  T *dh0r, *dc0r;  // [B, H]: what the restarts send to dh0, dc0 (nullptr without flags)
  T* dz;       // [steps of one block, B, 4H]: the gate gradients of the block being swept
  const uint8_t* flags;  // as in LstmFwd
};

// One row's BPTT step (lstm_row's derivative): the gate gradients dzr, dc for the step before,
// and dh = 0 (the caller adds dz W_h^T). With peepholes, c's gradient also flows through the
// i and f peepholes, and c''s through o's.
template <class T, bool PEEP>
LJ_INLINE void lstm_row_backward(int64_t H, const T* act, const T* c, const T* cp, const T* dy,
                                 const T* peep, T* dzr, T* dh, T* dc) {
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T i = act[j], f = act[H + j], g = act[2 * H + j], o = act[3 * H + j];
    const T tc = tanh_(c[j]);
    const T dht = (dy ? dy[j] : T(0)) + dh[j];
    const T dzo = dht * tc * o * (T(1) - o);
    T dct = dc[j] + dht * o * (T(1) - tc * tc);
    if constexpr (PEEP) dct += dzo * peep[2 * H + j];
    const T dzi = dct * g * i * (T(1) - i), dzf = dct * cp[j] * f * (T(1) - f);
    dzr[j] = dzi;
    dzr[H + j] = dzf;
    dzr[2 * H + j] = dct * i * (T(1) - g * g);
    dzr[3 * H + j] = dzo;
    if constexpr (PEEP)
      dc[j] = dct * f + dzi * peep[j] + dzf * peep[H + j];
    else
      dc[j] = dct * f;
    dh[j] = T(0);  // replaced by dz W_h^T below
  }
}

// The peepholes' gradients over the swept steps [t0, t1), for the gate columns [n0, n1) of
// 4H: dp_i += colsum dz_i c_prev, dp_f += colsum dz_f c_prev, dp_o += colsum dz_o c (added to
// dpeep [3, H], or written for the first block). dz holds the block's rows only.
template <class T>
void peephole_grads(int64_t t0, int64_t t1, int64_t B, int64_t H, const T* c0, const T* cs,
                    const T* dz, const uint8_t* flags, T* dpeep, int64_t n0, int64_t n1,
                    bool acc) {
  const int64_t G = 4 * H;
  for (const int64_t k : {0, 1, 3}) {  // gate blocks i, f, o; rows of dpeep 0, 1, 2
    const int64_t j0 = std::max(n0, k * H), j1 = std::min(n1, (k + 1) * H);
    if (j1 <= j0) continue;
    T* dp = dpeep + (k == 3 ? 2 : k) * H;  // dp[j - k H] for gate column j
    if (!acc) std::fill(dp + (j0 - k * H), dp + (j1 - k * H), T(0));
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t b = 0; b < B; ++b) {
        const int64_t row = t * B + b;
        const T* d = dz + ((t - t0) * B + b) * G;
        const T* c = k == 3 ? cs + row * H : state_before(c0, cs, flags, t, B, H, b);
        for (int64_t j = j0; j < j1; ++j) dp[j - k * H] += d[j] * c[j - k * H];
      }
  }
}

template <class T, int VB, int MR, int NV>
LJ_INLINE void lstm_backward(const LstmBwd<T>& a, int64_t b0, int64_t b1, int64_t t0,
                             int64_t t1) {
  const int64_t B = a.B, H = a.H, G = 4 * H, rows = b1 - b0;
  for (int64_t t = t1 - 1; t >= t0; --t) {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t bi = b0 + r, row = t * B + bi;
      const T* act = a.acts + row * G;
      const T* c = a.cs + row * H;
      const T* cp = state_before(a.c0, a.cs, a.flags, t, B, H, bi);
      const T* dy = a.dys ? a.dys + row * H : nullptr;
      T* dzr = a.dz + ((t - t0) * B + bi) * G;
      T* dh = a.dh + bi * H;
      T* dc = a.dc + bi * H;
      if (kept(a.flags, row)) {  // a masked step passes dh and dc through
        for (int64_t j = 0; j < H; ++j) dh[j] += dy ? dy[j] : T(0);
        std::fill(dzr, dzr + G, T(0));
        continue;
      }
      if (a.peep)
        lstm_row_backward<T, true>(H, act, c, cp, dy, a.peep, dzr, dh, dc);
      else
        lstm_row_backward<T, false>(H, act, c, cp, dy, nullptr, dzr, dh, dc);
    }
    gemm<T, VB, MR, NV>(rows, H, G, a.dz + ((t - t0) * B + b0) * G, G, 1, a.whT, H,
                        a.dh + b0 * H, H, true);
    if (t > 0 && a.flags)  // a restart's carry came from (h0, c0), not from step t - 1
      for (int64_t bi = b0; bi < b1; ++bi)
        if (restarts(a.flags, t * B + bi)) {
          move_to(a.dh0r + bi * H, a.dh + bi * H, H);
          move_to(a.dc0r + bi * H, a.dc + bi * H, H);
        }
  }
}

template <class T>
struct GruFwd {
  int64_t T_, B, I, H;
  const T *x, *wx, *wh, *b, *bhn, *h0;
  T *ys, *hT;
  T* acts;  // [T, B, 4H] when training, else nullptr: (r, z, n, a = h W_hn + b_hn) with the
            // reset after the product, (r, z, n, r h) with the reset before it
  T *px, *hw;  // scratch [B, 3H] each
  T* hr;       // scratch [B, H]: the previous h with the restarts' h0 (with flags)
  T* rh;       // scratch [B, H]: r h (reset before)
  const uint8_t* flags;  // [T, B] step flags (see the top), or nullptr: every step real
  bool after;  // reset after the product (b_hn) or before it (Cho et al. 2014)
};

template <class T, int VB, int MR, int NV>
LJ_INLINE void gru_forward(const GruFwd<T>& a, int64_t b0, int64_t b1) {
  const int64_t B = a.B, H = a.H, G = 3 * H, I = a.I, rows = b1 - b0;
  T* px = a.px + b0 * G;
  T* hw = a.hw + b0 * G;
  for (int64_t t = 0; t < a.T_; ++t) {
    const T* xt = a.x + (t * B + b0) * I;
    const T* hp0 =
        t == 0 ? a.h0 + b0 * H : previous_h(a.ys, a.h0, a.flags, t, B, H, b0, b1, a.hr);
    gemm<T, VB, MR, NV>(rows, G, I, xt, I, 1, a.wx, G, px, G, false);
    // h W_h: all three blocks with the reset after the product; before it, r's and z's, and
    // n's block is (r h) W_hn once r is known
    gemm<T, VB, MR, NV>(rows, a.after ? G : 2 * H, H, hp0, H, 1, a.wh, G, hw, G, false);
    if (!a.after) {
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t row = t * B + b0 + r;
        const T *p = px + r * G, *q = hw + r * G, *hp = hp0 + r * H, *bb = a.b;
        T* rh = a.rh + (b0 + r) * H;
        T* act = a.acts ? a.acts + row * 4 * H : nullptr;
        if (kept(a.flags, row)) {  // zeros: dW_hn reads the kept r h of every row
          std::fill(rh, rh + H, T(0));
          if (act) std::fill(act + 3 * H, act + 4 * H, T(0));
          continue;
        }
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T rr = sigmoid(p[j] + bb[j] + q[j]);
          rh[j] = rr * hp[j];
          if (act) {
            act[j] = rr;
            act[3 * H + j] = rh[j];
          }
        }
      }
      gemm<T, VB, MR, NV>(rows, H, H, a.rh + b0 * H, H, 1, a.wh + 2 * H, G, hw + 2 * H, G, false);
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t row = t * B + b0 + r;
      const T* p = px + r * G;
      const T* q = hw + r * G;
      const T* hp = hp0 + r * H;
      T* h = a.ys + row * H;
      if (kept(a.flags, row)) {  // a masked step: the carry is kept
        std::memcpy(h, hp, sizeof(T) * H);
        continue;
      }
      T* act = a.acts ? a.acts + row * 4 * H : nullptr;
      const T *bb = a.b, *bn = a.bhn;
      if (a.after) {
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T rr = sigmoid(p[j] + bb[j] + q[j]);
          const T zz = sigmoid(p[H + j] + bb[H + j] + q[H + j]);
          const T aa = q[2 * H + j] + bn[j];
          const T n = tanh_(p[2 * H + j] + bb[2 * H + j] + rr * aa);
          h[j] = zz * hp[j] + (T(1) - zz) * n;
          if (act) {
            act[j] = rr;
            act[H + j] = zz;
            act[2 * H + j] = n;
            act[3 * H + j] = aa;
          }
        }
      } else {
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T zz = sigmoid(p[H + j] + bb[H + j] + q[H + j]);
          const T n = tanh_(p[2 * H + j] + bb[2 * H + j] + q[2 * H + j]);  // q: (r h) W_hn
          h[j] = zz * hp[j] + (T(1) - zz) * n;
          if (act) {
            act[H + j] = zz;
            act[2 * H + j] = n;
          }
        }
      }
    }
  }
  for (int64_t bi = b0; bi < b1; ++bi) {
    const T* h = a.T_ == 0 ? a.h0 + bi * H : a.ys + ((a.T_ - 1) * B + bi) * H;
    std::memcpy(a.hT + bi * H, h, sizeof(T) * H);
  }
}

template <class T>
struct GruBwd {
  int64_t T_, B, I, H;
  const T *whT, *h0, *ys, *acts, *dys;  // whT [3H, H]; dys or null
  T* dh;         // running dh: starts as dhT, ends as dh0 (less the restarts')
  T* dh0r;       // [B, H]: what the restarts send to dh0 (nullptr without flags)
  T *dzx, *dzh;  // [steps of one block, B, 3H]: gradients at the input and at the recurrent
                 // pre-activations of the block being swept
  T* drh;        // scratch [B, H]: the gradient at r h (reset before)
  const uint8_t* flags;  // as in GruFwd
  bool after;            // as in GruFwd
};

template <class T, int VB, int MR, int NV>
LJ_INLINE void gru_backward(const GruBwd<T>& a, int64_t b0, int64_t b1, int64_t t0,
                            int64_t t1) {
  const int64_t B = a.B, H = a.H, G = 3 * H, rows = b1 - b0;
  for (int64_t t = t1 - 1; t >= t0; --t) {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t bi = b0 + r, row = t * B + bi;
      const T* act = a.acts + row * 4 * H;
      const T* hp = state_before(a.h0, a.ys, a.flags, t, B, H, bi);
      const T* dy = a.dys ? a.dys + row * H : nullptr;
      T* dx = a.dzx + ((t - t0) * B + bi) * G;
      T* dq = a.dzh + ((t - t0) * B + bi) * G;
      T* dh = a.dh + bi * H;
      if (kept(a.flags, row)) {  // a masked step passes dh through
        for (int64_t j = 0; j < H; ++j) dh[j] += dy ? dy[j] : T(0);
        std::fill(dx, dx + G, T(0));
        std::fill(dq, dq + G, T(0));
        continue;
      }
      if (a.after) {
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T rr = act[j], zz = act[H + j], n = act[2 * H + j], aa = act[3 * H + j];
          const T d = (dy ? dy[j] : T(0)) + dh[j];
          const T dzp = d * (hp[j] - n) * zz * (T(1) - zz);
          const T dnp = d * (T(1) - zz) * (T(1) - n * n);
          const T drp = dnp * aa * rr * (T(1) - rr);
          dx[j] = drp;
          dx[H + j] = dzp;
          dx[2 * H + j] = dnp;
          dq[j] = drp;
          dq[H + j] = dzp;
          dq[2 * H + j] = dnp * rr;
          dh[j] = d * zz;  // the direct path; the product with W_h^T is added below
        }
      } else {  // r's gradient needs d(r h) = dn W_hn^T first: below
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T zz = act[H + j], n = act[2 * H + j];
          const T d = (dy ? dy[j] : T(0)) + dh[j];
          const T dzp = d * (hp[j] - n) * zz * (T(1) - zz);
          const T dnp = d * (T(1) - zz) * (T(1) - n * n);
          dx[H + j] = dzp;
          dx[2 * H + j] = dnp;
          dq[H + j] = dzp;
          dq[2 * H + j] = dnp;
          dh[j] = d * zz;
        }
      }
    }
    T* dzh = a.dzh + ((t - t0) * B + b0) * G;
    if (!a.after) {
      gemm<T, VB, MR, NV>(rows, H, H, dzh + 2 * H, G, 1, a.whT + 2 * H * H, H, a.drh + b0 * H, H,
                          false);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t bi = b0 + r, row = t * B + bi;
        if (kept(a.flags, row)) continue;
        const T* act = a.acts + row * 4 * H;
        const T* hp = state_before(a.h0, a.ys, a.flags, t, B, H, bi);
        const T* drh = a.drh + bi * H;
        T* dx = a.dzx + ((t - t0) * B + bi) * G;
        T* dq = dzh + r * G;
        T* dh = a.dh + bi * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T rr = act[j];
          const T drp = drh[j] * hp[j] * rr * (T(1) - rr);
          dx[j] = drp;
          dq[j] = drp;
          dh[j] += drh[j] * rr;
        }
      }
    }
    // dh += [dr, dz, da] W_h^T (reset after), [dr, dz] W_hr,hz^T (before: n read r h)
    gemm<T, VB, MR, NV>(rows, H, a.after ? G : 2 * H, dzh, G, 1, a.whT, H, a.dh + b0 * H, H,
                        true);
    if (t > 0 && a.flags)  // a restart's carry came from h0, not from step t - 1
      for (int64_t bi = b0; bi < b1; ++bi)
        if (restarts(a.flags, t * B + bi)) move_to(a.dh0r + bi * H, a.dh + bi * H, H);
  }
}

// The weight gradients of the steps [t0, t1) once they are swept, for columns [n0, n1) of the
// G*H gate columns, added to dW (acc) or written (the first block): dW_x += X^T dZx,
// dW_h += Hprev^T dZh (Hprev = [h0; ys[:-1]]), db += colsum dZx, and db_hn += colsum of dZh's
// last H columns (GRU) where asked. dzx, dzh hold the block's rows only. With `rh` (the GRU
// with the reset before the product: r h of each row, row stride 4H), dW_h's columns
// [2H, 3H) are RH^T dZh instead, n's recurrent product having read r h, not h. A restart at
// (t, b) (t >= 1) had h0[b], not ys[t - 1, b], as its previous state: the columns that read
// the previous state get (h0[b] - ys[t - 1, b])^T dZh[t, b] more.
template <class T, int VB, int MR, int NV>
LJ_INLINE void weight_grads(int64_t t0, int64_t t1, int64_t B, int64_t I, int64_t H, int64_t GH,
                            const T* x, const T* h0, const T* ys, const T* rh, const T* dzx,
                            const T* dzh, T* dwx, T* dwh, T* db, T* dbhn, int64_t n0, int64_t n1,
                            bool acc, const uint8_t* flags) {
  const int64_t rows = (t1 - t0) * B;
  if (n1 <= n0) return;
  gemm<T, VB, MR, NV>(I, n1 - n0, rows, x + t0 * B * I, 1, I, dzx + n0, GH, dwx + n0, GH, acc);
  const int64_t m1 = rh ? std::min(n1, 2 * H) : n1;  // [n0, m1): the columns reading Hprev
  if (m1 > n0) {
    const int64_t w = m1 - n0;
    if (t0 == 0) {
      gemm<T, VB, MR, NV>(H, w, B, h0, 1, H, dzh + n0, GH, dwh + n0, GH, acc);
      if (t1 > 1)
        gemm<T, VB, MR, NV>(H, w, (t1 - 1) * B, ys, 1, H, dzh + B * GH + n0, GH, dwh + n0, GH,
                            true);
    } else {
      gemm<T, VB, MR, NV>(H, w, rows, ys + (t0 - 1) * B * H, 1, H, dzh + n0, GH, dwh + n0, GH,
                          acc);
    }
    for (int64_t t = std::max<int64_t>(t0, 1); flags && t < t1; ++t)
      for (int64_t b = 0; b < B; ++b) {
        if (!restarts(flags, t * B + b)) continue;
        const T* hr = h0 + b * H;
        const T* yp = ys + ((t - 1) * B + b) * H;
        const T* d = dzh + ((t - t0) * B + b) * GH;
        for (int64_t k = 0; k < H; ++k) {
          const T diff = hr[k] - yp[k];
          T* dw = dwh + k * GH;
#pragma omp simd
          for (int64_t j = n0; j < m1; ++j) dw[j] += diff * d[j];
        }
      }
  }
  if (const int64_t j0 = std::max(n0, 2 * H); rh && n1 > j0)
    gemm<T, VB, MR, NV>(H, n1 - j0, rows, rh + t0 * B * 4 * H, 1, 4 * H, dzh + j0, GH, dwh + j0,
                        GH, acc);
  if (!acc) std::fill(db + n0, db + n1, T(0));
  for (int64_t r = 0; r < rows; ++r) {
    const T* d = dzx + r * GH;
#pragma omp simd
    for (int64_t j = n0; j < n1; ++j) db[j] += d[j];
  }
  if (dbhn) {  // GRU: columns [2H, 3H) of dZh
    const int64_t j0 = std::max(n0, 2 * H), j1 = n1;
    if (j1 <= j0) return;
    if (!acc) std::fill(dbhn + (j0 - 2 * H), dbhn + (j1 - 2 * H), T(0));
    for (int64_t r = 0; r < rows; ++r) {
      const T* d = dzh + r * GH;
      for (int64_t j = j0; j < j1; ++j) dbhn[j - 2 * H] += d[j];
    }
  }
}

// ------------------------------------------------------------------ one table per ISA

template <class T>
struct Ops {
  void (*gemm)(int64_t, int64_t, int64_t, const T*, int64_t, int64_t, const T*, int64_t, T*,
               int64_t, bool);
  void (*lstm_forward)(const LstmFwd<T>&, int64_t, int64_t);
  void (*lstm_backward)(const LstmBwd<T>&, int64_t, int64_t, int64_t, int64_t);
  void (*gru_forward)(const GruFwd<T>&, int64_t, int64_t);
  void (*gru_backward)(const GruBwd<T>&, int64_t, int64_t, int64_t, int64_t);
  void (*weight_grads)(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, const T*, const T*,
                       const T*, const T*, const T*, const T*, T*, T*, T*, T*, int64_t, int64_t,
                       bool, const uint8_t*);
};

#define LJ_DEFINE_OPS(NAME, TARGET, T, VB, MR, NV)                                              \
  TARGET void NAME##_gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t ars,            \
                          int64_t aks, const T* B, int64_t ldb, T* C, int64_t ldc, bool acc) { \
    gemm<T, VB, MR, NV>(M, N, K, A, ars, aks, B, ldb, C, ldc, acc);                            \
  }                                                                                             \
  TARGET void NAME##_lstm_forward(const LstmFwd<T>& a, int64_t b0, int64_t b1) {               \
    lstm_forward<T, VB, MR, NV>(a, b0, b1);                                                     \
  }                                                                                             \
  TARGET void NAME##_lstm_backward(const LstmBwd<T>& a, int64_t b0, int64_t b1, int64_t t0,   \
                                   int64_t t1) {                                                \
    lstm_backward<T, VB, MR, NV>(a, b0, b1, t0, t1);                                            \
  }                                                                                             \
  TARGET void NAME##_gru_forward(const GruFwd<T>& a, int64_t b0, int64_t b1) {                 \
    gru_forward<T, VB, MR, NV>(a, b0, b1);                                                      \
  }                                                                                             \
  TARGET void NAME##_gru_backward(const GruBwd<T>& a, int64_t b0, int64_t b1, int64_t t0,     \
                                  int64_t t1) {                                                 \
    gru_backward<T, VB, MR, NV>(a, b0, b1, t0, t1);                                             \
  }                                                                                             \
  TARGET void NAME##_weight_grads(int64_t t0, int64_t t1, int64_t B, int64_t I, int64_t H,     \
                                  int64_t GH, const T* x, const T* h0, const T* ys,            \
                                  const T* rh, const T* dzx, const T* dzh, T* dwx, T* dwh,     \
                                  T* db, T* dbhn, int64_t n0, int64_t n1, bool acc,            \
                                  const uint8_t* flags) {                                      \
    weight_grads<T, VB, MR, NV>(t0, t1, B, I, H, GH, x, h0, ys, rh, dzx, dzh, dwx, dwh, db,    \
                                dbhn, n0, n1, acc, flags);                                      \
  }                                                                                             \
  const Ops<T> NAME##_ops = {NAME##_gemm,          NAME##_lstm_forward, NAME##_lstm_backward,  \
                             NAME##_gru_forward,   NAME##_gru_backward, NAME##_weight_grads};

// Register tiles: 4 rows x NV vectors of accumulators, sized to each ISA's register file.
#if defined(__x86_64__) || defined(_M_X64)
#define LJ_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")))
#define LJ_AVX2 __attribute__((target("avx2,fma")))
LJ_DEFINE_OPS(avx512_f32, LJ_AVX512, float, 64, 4, 4)
LJ_DEFINE_OPS(avx512_f64, LJ_AVX512, double, 64, 4, 4)
LJ_DEFINE_OPS(avx2_f32, LJ_AVX2, float, 32, 4, 3)
LJ_DEFINE_OPS(avx2_f64, LJ_AVX2, double, 32, 4, 3)
#endif
LJ_DEFINE_OPS(base_f32, , float, 16, 4, 2)
LJ_DEFINE_OPS(base_f64, , double, 16, 4, 2)

#if defined(__x86_64__) || defined(_M_X64)
int detect_isa() {  // 2: AVX-512, 1: AVX2 + FMA, 0: baseline x86-64
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw"))
    return 2;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
  return 0;
}

const int kIsa = detect_isa();

template <class T>
const Ops<T>& ops();
template <>
const Ops<float>& ops<float>() {
  return kIsa == 2 ? avx512_f32_ops : kIsa == 1 ? avx2_f32_ops : base_f32_ops;
}
template <>
const Ops<double>& ops<double>() {
  return kIsa == 2 ? avx512_f64_ops : kIsa == 1 ? avx2_f64_ops : base_f64_ops;
}
#else  // other CPUs: the portable build of the same code
const int kIsa = 0;
template <class T>
const Ops<T>& ops();
template <>
const Ops<float>& ops<float>() {
  return base_f32_ops;
}
template <>
const Ops<double>& ops<double>() {
  return base_f64_ops;
}
#endif

// ------------------------------------------------------------------ threads

// fn(k) for k in [0, n): n - 1 tasks go to XLA's intra-op pool and the calling thread works
// too, claiming whichever index is next, so nothing waits on a task the pool has not started
// (a pool thread calling this cannot deadlock). A task that starts after all indices are
// claimed returns at once without touching fn.
template <class F>
void parallel_for(ffi::ThreadPool& pool, int64_t n, const F& fn) {
  if (n <= 1) {
    if (n == 1) fn(0);
    return;
  }
  struct Shared {
    std::atomic<int64_t> next{0}, done{0};
  };
  auto shared = std::make_shared<Shared>();
  const F* f = &fn;
  auto work = [shared, n, f]() {
    for (int64_t k; (k = shared->next.fetch_add(1)) < n;) {
      (*f)(k);
      shared->done.fetch_add(1, std::memory_order_release);
    }
  };
  for (int64_t i = 1; i < n; ++i) pool.Schedule(decltype(work)(work));
  work();
  while (shared->done.load(std::memory_order_acquire) < n) std::this_thread::yield();
}

// Chunks of the batch: `threads` (0: the pool's size), at least 4 rows each.
int64_t chunks(ffi::ThreadPool& pool, int64_t threads, int64_t B) {
  int64_t n = threads > 0 ? threads : std::max<int64_t>(1, pool.num_threads());
  return std::max<int64_t>(1, std::min<int64_t>(n, B / 4));
}

LJ_INLINE void split(int64_t n, int64_t parts, int64_t k, int64_t& a, int64_t& b) {
  a = n * k / parts;
  b = n * (k + 1) / parts;
}

// Column ranges of GH columns for `parts` workers, in multiples of 64 columns.
LJ_INLINE void column_split(int64_t GH, int64_t parts, int64_t k, int64_t& a, int64_t& b) {
  const int64_t blocks = (GH + 63) / 64;
  split(blocks, parts, k, a, b);
  a = std::min(a * 64, GH);
  b = std::min(b * 64, GH);
}

template <class T>
std::vector<T> transposed(const T* w, int64_t rows, int64_t cols) {
  std::vector<T> t(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[c * rows + r] = w[r * cols + c];
  return t;
}

// ------------------------------------------------------------------ handlers

// Leading axes: an operand may carry leading axes in front of its own shape (under jax.vmap,
// vmap_method="broadcast_all", every operand and result carries the same ones). The kernel
// then runs once per member, in order, each member split over the threads as usual.
struct Lead {
  int64_t k = 0, M = 1;  // how many leading axes, and the members they hold
  std::vector<int64_t> dims;
};

// The leading axes of xs, whose own rank is 3.
Lead leading(const ffi::AnyBuffer& xs) {
  Lead L;
  auto d = xs.dimensions();
  L.k = std::max<int64_t>(0, int64_t(d.size()) - 3);
  for (int64_t i = 0; i < L.k; ++i) {
    L.dims.push_back(d[i]);
    L.M *= d[i];
  }
  return L;
}

// b is [leading axes of L..., want...].
bool dims_are(const ffi::AnyBuffer& b, const Lead& L, std::initializer_list<int64_t> want) {
  auto d = b.dimensions();
  if (int64_t(d.size()) != L.k + int64_t(want.size())) return false;
  for (int64_t i = 0; i < L.k; ++i)
    if (d[i] != L.dims[i]) return false;
  size_t i = L.k;
  for (int64_t w : want)
    if (d[i++] != w) return false;
  return true;
}

// Member m's part of a buffer: its own data, past m members.
struct View {
  void* data;
};
View member(const ffi::AnyBuffer& b, const Lead& L, int64_t m) {
  return View{static_cast<char*>(b.untyped_data()) + m * (b.size_bytes() / L.M)};
}
View member(ffi::Result<ffi::AnyBuffer>& b, const Lead& L, int64_t m) { return member(*b, L, m); }

template <class T>
const T* in(const View& v) {
  return static_cast<const T*>(v.data);
}
template <class T>
T* out(const View& v) {
  return static_cast<T*>(v.data);
}

ffi::Error shape_error(const char* what) {
  return ffi::Error::InvalidArgument(std::string("lstmjax fused kernel: ") + what);
}

struct Sizes {
  int64_t T, B, I, H;
};

// The step flags [T, B] (uint8, see the top; bool: a plain step mask), or nullptr without them.
bool step_flags(const ffi::AnyBuffer& flags, bool has_flags, const Sizes& s, const Lead& L,
                const uint8_t*& base) {
  base = nullptr;
  if (!has_flags) return true;
  auto t = flags.element_type();
  if ((t != ffi::DataType::U8 && t != ffi::DataType::PRED) || !dims_are(flags, L, {s.T, s.B}))
    return false;
  base = reinterpret_cast<const uint8_t*>(flags.untyped_data());
  return true;
}
const uint8_t* flags_of(const uint8_t* base, const Sizes& s, int64_t m) {
  return base ? base + m * s.T * s.B : nullptr;
}

// xs [..., T, B, I] and the recurrent weight [..., H, G*H] give the sizes; the rest is checked.
ffi::Error sizes(const ffi::AnyBuffer& xs, const ffi::AnyBuffer& wx, const ffi::AnyBuffer& wh,
                 int64_t gates, const Lead& L, Sizes& s) {
  auto dx = xs.dimensions(), dh = wh.dimensions();
  if (dx.size() < 3 || int64_t(dh.size()) != L.k + 2)
    return shape_error("xs must be [..., T, B, I], w_h [..., H, G*H]");
  s = {dx[L.k], dx[L.k + 1], dx[L.k + 2], dh[L.k]};
  if (!dims_are(wh, L, {s.H, gates * s.H}) || !dims_are(wx, L, {s.I, gates * s.H}))
    return shape_error("weights do not match xs and the gate count");
  auto t = xs.element_type();
  if (t != ffi::DataType::F32 && t != ffi::DataType::F64)
    return shape_error("only float32 and float64 are supported");
  if (wx.element_type() != t || wh.element_type() != t)
    return shape_error("every operand must have the dtype of xs");
  return ffi::Error::Success();
}

template <class T>
ffi::Error LstmForward(ffi::ThreadPool& pool, const Sizes& s, const View& xs,
                       const View& wx, const View& wh,
                       const View& b, const T* peep, const View& h0,
                       const View& c0, const View& ys,
                       const View& hT, const View& cT,
                       T* acts, T* cs, int64_t threads, const uint8_t* flags) {
  const int64_t G = 4 * s.H;
  std::vector<T> z(s.B * G), c(acts ? 0 : s.B * s.H), hr(flags ? s.B * s.H : 0);
  LstmFwd<T> a{s.T, s.B, s.I, s.H, in<T>(xs), in<T>(wx), in<T>(wh), in<T>(b), peep, in<T>(h0),
               in<T>(c0), out<T>(ys), out<T>(hT), out<T>(cT), acts, cs, z.data(), c.data(),
               hr.data(), flags};
  const int64_t n = chunks(pool, threads, s.B);
  const auto& o = ops<T>();
  parallel_for(pool, n, [&](int64_t k) {
    int64_t b0, b1;
    split(s.B, n, k, b0, b1);
    o.lstm_forward(a, b0, b1);
  });
  return ffi::Error::Success();
}

// f(T{}) with T the element type of xs (float or double), once per member.
template <class F>
ffi::Error for_members(const ffi::AnyBuffer& xs, const Lead& L, const F& f) {
  for (int64_t m = 0; m < L.M; ++m) {
    if (xs.element_type() == ffi::DataType::F32)
      f(float{}, m);
    else
      f(double{}, m);
  }
  return ffi::Error::Success();
}

// Both LSTM forward entry points: `acts` and `cs` are the training outputs (null: inference).
// Without `peephole`, peep is a placeholder.
ffi::Error LstmForwardChecked(ffi::ThreadPool& pool, const ffi::AnyBuffer& xs,
                              const ffi::AnyBuffer& wx, const ffi::AnyBuffer& wh,
                              const ffi::AnyBuffer& b, const ffi::AnyBuffer& peep,
                              const ffi::AnyBuffer& h0, const ffi::AnyBuffer& c0,
                              const ffi::AnyBuffer& flags, ffi::Result<ffi::AnyBuffer>& ys,
                              ffi::Result<ffi::AnyBuffer>& hT, ffi::Result<ffi::AnyBuffer>& cT,
                              ffi::Result<ffi::AnyBuffer>* acts, ffi::Result<ffi::AnyBuffer>* cs,
                              int64_t threads, bool has_flags, bool peephole) {
  const Lead L = leading(xs);
  Sizes s;
  if (auto e = sizes(xs, wx, wh, 4, L, s); e.failure()) return e;
  if (!dims_are(b, L, {4 * s.H}) || (peephole && !dims_are(peep, L, {3, s.H})) ||
      !dims_are(h0, L, {s.B, s.H}) || !dims_are(c0, L, {s.B, s.H}))
    return shape_error("b, the peepholes, h0 or c0 has the wrong shape");
  if (acts && (!dims_are(**acts, L, {s.T, s.B, 4 * s.H}) || !dims_are(**cs, L, {s.T, s.B, s.H})))
    return shape_error("acts or cs has the wrong shape");
  const uint8_t* v;
  if (!step_flags(flags, has_flags, s, L, v)) return shape_error("the step flags must be [T, B]");
  return for_members(xs, L, [&](auto zero, int64_t m) {
    using T = decltype(zero);
    auto at = [&](auto& buf) { return member(buf, L, m); };
    LstmForward<T>(pool, s, at(xs), at(wx), at(wh), at(b), peephole ? in<T>(at(peep)) : nullptr,
                   at(h0), at(c0), at(ys), at(hT),
                   at(cT), acts ? out<T>(at(*acts)) : nullptr, cs ? out<T>(at(*cs)) : nullptr,
                   threads, flags_of(v, s, m));
  });
}

// (xs, w_x, w_h, b, h0, c0) -> (ys, hT, cT)
ffi::Error LstmForwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer xs, ffi::AnyBuffer wx,
                           ffi::AnyBuffer wh, ffi::AnyBuffer b, ffi::AnyBuffer peep,
                           ffi::AnyBuffer h0, ffi::AnyBuffer c0, ffi::AnyBuffer flags,
                           ffi::Result<ffi::AnyBuffer> ys, ffi::Result<ffi::AnyBuffer> hT,
                           ffi::Result<ffi::AnyBuffer> cT, int64_t threads, bool has_flags,
                           bool peephole) {
  return LstmForwardChecked(pool, xs, wx, wh, b, peep, h0, c0, flags, ys, hT, cT, nullptr,
                            nullptr, threads, has_flags, peephole);
}

// (xs, w_x, w_h, b, h0, c0) -> (ys, hT, cT, acts, cs): also what the backward pass needs
ffi::Error LstmForwardTrainImpl(ffi::ThreadPool pool, ffi::AnyBuffer xs, ffi::AnyBuffer wx,
                                ffi::AnyBuffer wh, ffi::AnyBuffer b, ffi::AnyBuffer peep,
                                ffi::AnyBuffer h0, ffi::AnyBuffer c0, ffi::AnyBuffer flags,
                                ffi::Result<ffi::AnyBuffer> ys, ffi::Result<ffi::AnyBuffer> hT,
                                ffi::Result<ffi::AnyBuffer> cT, ffi::Result<ffi::AnyBuffer> acts,
                                ffi::Result<ffi::AnyBuffer> cs, int64_t threads,
                                bool has_flags, bool peephole) {
  return LstmForwardChecked(pool, xs, wx, wh, b, peep, h0, c0, flags, ys, hT, cT, &acts, &cs,
                            threads, has_flags, peephole);
}

// Steps per block of the backward sweep: a block's gate gradients stay near 1 MB. Blocks keep
// the scratch small, so that no call allocates (and page-faults through) a [T, B, G*H] buffer.
int64_t block_steps(int64_t T, int64_t B, int64_t bytes_per_row) {
  const int64_t per_step = std::max<int64_t>(1, B * bytes_per_row);
  return std::max<int64_t>(1, std::min<int64_t>(T, (int64_t(1) << 20) / per_step));
}

// The backward pass of both cells, block by block of `blk` steps from the last: `sweep(k, t0,
// t1)` runs batch part k of n over steps [t0, t1) (filling the block's dzx, dzh), then the
// block's weight gradients are added (dW columns split over the workers, each also calling
// `extra(t0, t1, n0, n1, acc)` for its columns: the LSTM's peepholes), and its
// dX = dZx W_x^T is written (rows split; skipped without dx).
template <class T, class Sweep, class Extra>
void backward_blocks(ffi::ThreadPool& pool, int64_t n, const Sizes& s, int64_t GH, int64_t blk,
                     const Sweep& sweep, const Extra& extra, const T* x, const T* wx,
                     const T* h0, const T* ys, const T* rh, const T* dzx, const T* dzh, T* dwx,
                     T* dwh, T* db, T* dbhn, T* dx, const uint8_t* flags) {
  const auto& o = ops<T>();
  if (s.T == 0) {
    std::fill(dwx, dwx + s.I * GH, T(0));
    std::fill(dwh, dwh + s.H * GH, T(0));
    std::fill(db, db + GH, T(0));
    if (dbhn) std::fill(dbhn, dbhn + s.H, T(0));
    return;
  }
  std::vector<T> wxT = dx ? transposed(wx, s.I, GH) : std::vector<T>();
  for (int64_t t1 = s.T; t1 > 0; t1 -= blk) {
    const int64_t t0 = std::max<int64_t>(0, t1 - blk), rows = (t1 - t0) * s.B;
    const bool acc = t1 != s.T;
    parallel_for(pool, n, [&](int64_t k) { sweep(k, t0, t1); });
    parallel_for(pool, 2 * n, [&](int64_t k) {
      int64_t a0, a1;
      if (k < n) {
        column_split(GH, n, k, a0, a1);
        o.weight_grads(t0, t1, s.B, s.I, s.H, GH, x, h0, ys, rh, dzx, dzh, dwx, dwh, db, dbhn,
                       a0, a1, acc, flags);
        extra(t0, t1, a0, a1, acc);
      } else if (dx) {
        split(rows, n, k - n, a0, a1);
        if (a1 > a0)
          o.gemm(a1 - a0, s.I, GH, dzx + a0 * GH, GH, 1, wxT.data(), s.I,
                 dx + (t0 * s.B + a0) * s.I, s.I, false);
      }
    });
  }
}

template <class T>
ffi::Error LstmBackward(ffi::ThreadPool& pool, const Sizes& s, int64_t threads, bool need_dxs,
                        bool has_dys, const View& xs, const View& wx,
                        const View& wh, const View& h0,
                        const View& c0, const View& ys,
                        const View& acts, const View& cs,
                        const View& dys, const View& dhT,
                        const View& dcT, const T* peep, T* dxs, T* dwx, T* dwh, T* db,
                        T* dpeep, T* dh0, T* dc0, const uint8_t* flags) {
  const int64_t G = 4 * s.H, blk = block_steps(s.T, s.B, G * sizeof(T));
  const int64_t BH = s.B * s.H;
  std::vector<T> whT = transposed(in<T>(wh), s.H, G), dz(blk * s.B * G);
  std::vector<T> restart(flags ? 2 * BH : 0);  // dh0, dc0 from the restarts
  std::memcpy(dh0, in<T>(dhT), sizeof(T) * BH);
  std::memcpy(dc0, in<T>(dcT), sizeof(T) * BH);
  LstmBwd<T> a{s.T,       s.B,         s.I,         s.H,
               in<T>(xs), whT.data(),  in<T>(h0),   in<T>(c0),
               in<T>(ys), in<T>(acts), in<T>(cs),   has_dys ? in<T>(dys) : nullptr,
               peep,      dh0,         dc0,         flags ? restart.data() : nullptr,
               flags ? restart.data() + BH : nullptr, dz.data(), flags};
  const int64_t n = chunks(pool, threads, s.B);
  const auto& o = ops<T>();
  auto sweep = [&](int64_t k, int64_t t0, int64_t t1) {
    int64_t b0, b1;
    split(s.B, n, k, b0, b1);
    o.lstm_backward(a, b0, b1, t0, t1);
  };
  auto peepholes = [&](int64_t t0, int64_t t1, int64_t n0, int64_t n1, bool acc) {
    if (dpeep)
      peephole_grads<T>(t0, t1, s.B, s.H, in<T>(c0), in<T>(cs), dz.data(), flags, dpeep, n0, n1,
                        acc);
  };
  if (dpeep && s.T == 0) std::fill(dpeep, dpeep + 3 * s.H, T(0));
  backward_blocks<T>(pool, n, s, G, blk, sweep, peepholes, in<T>(xs), in<T>(wx), in<T>(h0),
                     in<T>(ys), nullptr, dz.data(), dz.data(), dwx, dwh, db, nullptr,
                     need_dxs ? dxs : nullptr, flags);
  for (int64_t k = 0; flags && k < BH; ++k) {
    dh0[k] += restart[k];
    dc0[k] += restart[BH + k];
  }
  return ffi::Error::Success();
}

// (xs, w_x, w_h, h0, c0, ys, acts, cs, dys, dhT, dcT) -> (dxs, dw_x, dw_h, db, dh0, dc0)
ffi::Error LstmBackwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer xs, ffi::AnyBuffer wx,
                            ffi::AnyBuffer wh, ffi::AnyBuffer peep, ffi::AnyBuffer h0,
                            ffi::AnyBuffer c0, ffi::AnyBuffer ys, ffi::AnyBuffer acts,
                            ffi::AnyBuffer cs, ffi::AnyBuffer dys, ffi::AnyBuffer dhT,
                            ffi::AnyBuffer dcT, ffi::AnyBuffer flags,
                            ffi::Result<ffi::AnyBuffer> dxs, ffi::Result<ffi::AnyBuffer> dwx,
                            ffi::Result<ffi::AnyBuffer> dwh, ffi::Result<ffi::AnyBuffer> db,
                            ffi::Result<ffi::AnyBuffer> dpeep, ffi::Result<ffi::AnyBuffer> dh0,
                            ffi::Result<ffi::AnyBuffer> dc0, int64_t threads, bool need_dxs,
                            bool has_dys, bool has_flags, bool peephole) {
  const Lead L = leading(xs);
  Sizes s;
  if (auto e = sizes(xs, wx, wh, 4, L, s); e.failure()) return e;
  const int64_t G = 4 * s.H;
  if (!dims_are(h0, L, {s.B, s.H}) || !dims_are(c0, L, {s.B, s.H}) ||
      !dims_are(ys, L, {s.T, s.B, s.H}) || !dims_are(acts, L, {s.T, s.B, G}) ||
      !dims_are(cs, L, {s.T, s.B, s.H}) || !dims_are(dhT, L, {s.B, s.H}) ||
      !dims_are(dcT, L, {s.B, s.H}) || (has_dys && !dims_are(dys, L, {s.T, s.B, s.H})) ||
      (need_dxs && !dims_are(*dxs, L, {s.T, s.B, s.I})) || !dims_are(*dwx, L, {s.I, G}) ||
      !dims_are(*dwh, L, {s.H, G}) || !dims_are(*db, L, {G}) ||
      (peephole && (!dims_are(peep, L, {3, s.H}) || !dims_are(*dpeep, L, {3, s.H}))) ||
      !dims_are(*dh0, L, {s.B, s.H}) || !dims_are(*dc0, L, {s.B, s.H}))
    return shape_error("a residual, cotangent or gradient has the wrong shape");
  const uint8_t* v;
  if (!step_flags(flags, has_flags, s, L, v)) return shape_error("the step flags must be [T, B]");
  return for_members(xs, L, [&](auto zero, int64_t m) {
    using T = decltype(zero);
    auto at = [&](auto& buf) { return member(buf, L, m); };
    LstmBackward<T>(pool, s, threads, need_dxs, has_dys, at(xs), at(wx), at(wh), at(h0), at(c0),
                    at(ys), at(acts), at(cs), has_dys ? at(dys) : View{nullptr}, at(dhT),
                    at(dcT), peephole ? in<T>(at(peep)) : nullptr,
                    need_dxs ? out<T>(at(dxs)) : nullptr, out<T>(at(dwx)), out<T>(at(dwh)),
                    out<T>(at(db)), peephole ? out<T>(at(dpeep)) : nullptr, out<T>(at(dh0)),
                    out<T>(at(dc0)), flags_of(v, s, m));
  });
}

template <class T>
ffi::Error GruForward(ffi::ThreadPool& pool, const Sizes& s, const View& xs,
                      const View& wx, const View& wh,
                      const View& b, const View& bhn,
                      const View& h0, const View& ys,
                      const View& hT, T* acts, int64_t threads,
                      const uint8_t* flags, bool after) {
  const int64_t G = 3 * s.H, BH = s.B * s.H;
  std::vector<T> px(s.B * G), hw(s.B * G), hr(flags ? BH : 0), rh(after ? 0 : BH);
  GruFwd<T> a{s.T,        s.B,         s.I,        s.H,        in<T>(xs), in<T>(wx),
              in<T>(wh),  in<T>(b),    in<T>(bhn), in<T>(h0),  out<T>(ys), out<T>(hT),
              acts,       px.data(),   hw.data(), hr.data(), rh.data(), flags, after};
  const int64_t n = chunks(pool, threads, s.B);
  const auto& o = ops<T>();
  parallel_for(pool, n, [&](int64_t k) {
    int64_t b0, b1;
    split(s.B, n, k, b0, b1);
    o.gru_forward(a, b0, b1);
  });
  return ffi::Error::Success();
}

// Both GRU forward entry points: `acts` is the training output (null: inference). Without
// `reset_after`, b_hn is a placeholder (that GRU has none).
ffi::Error GruForwardChecked(ffi::ThreadPool& pool, const ffi::AnyBuffer& xs,
                             const ffi::AnyBuffer& wx, const ffi::AnyBuffer& wh,
                             const ffi::AnyBuffer& b, const ffi::AnyBuffer& bhn,
                             const ffi::AnyBuffer& h0, const ffi::AnyBuffer& flags,
                             ffi::Result<ffi::AnyBuffer>& ys, ffi::Result<ffi::AnyBuffer>& hT,
                             ffi::Result<ffi::AnyBuffer>* acts, int64_t threads, bool has_flags,
                             bool reset_after) {
  const Lead L = leading(xs);
  Sizes s;
  if (auto e = sizes(xs, wx, wh, 3, L, s); e.failure()) return e;
  if (!dims_are(b, L, {3 * s.H}) || (reset_after && !dims_are(bhn, L, {s.H})) ||
      !dims_are(h0, L, {s.B, s.H}))
    return shape_error("b, b_hn or h0 has the wrong shape");
  if (acts && !dims_are(**acts, L, {s.T, s.B, 4 * s.H}))
    return shape_error("acts has the wrong shape");
  const uint8_t* v;
  if (!step_flags(flags, has_flags, s, L, v)) return shape_error("the step flags must be [T, B]");
  return for_members(xs, L, [&](auto zero, int64_t m) {
    using T = decltype(zero);
    auto at = [&](auto& buf) { return member(buf, L, m); };
    GruForward<T>(pool, s, at(xs), at(wx), at(wh), at(b), at(bhn), at(h0), at(ys), at(hT),
                  acts ? out<T>(at(*acts)) : nullptr, threads, flags_of(v, s, m), reset_after);
  });
}

// (xs, w_x, w_h, b, b_hn, h0) -> (ys, hT)
ffi::Error GruForwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer xs, ffi::AnyBuffer wx,
                          ffi::AnyBuffer wh, ffi::AnyBuffer b, ffi::AnyBuffer bhn,
                          ffi::AnyBuffer h0, ffi::AnyBuffer flags,
                          ffi::Result<ffi::AnyBuffer> ys, ffi::Result<ffi::AnyBuffer> hT,
                          int64_t threads, bool has_flags, bool reset_after) {
  return GruForwardChecked(pool, xs, wx, wh, b, bhn, h0, flags, ys, hT, nullptr, threads,
                           has_flags, reset_after);
}

// (xs, w_x, w_h, b, b_hn, h0) -> (ys, hT, acts): also what the backward pass needs
ffi::Error GruForwardTrainImpl(ffi::ThreadPool pool, ffi::AnyBuffer xs, ffi::AnyBuffer wx,
                               ffi::AnyBuffer wh, ffi::AnyBuffer b, ffi::AnyBuffer bhn,
                               ffi::AnyBuffer h0, ffi::AnyBuffer flags,
                               ffi::Result<ffi::AnyBuffer> ys, ffi::Result<ffi::AnyBuffer> hT,
                               ffi::Result<ffi::AnyBuffer> acts, int64_t threads,
                               bool has_flags, bool reset_after) {
  return GruForwardChecked(pool, xs, wx, wh, b, bhn, h0, flags, ys, hT, &acts, threads,
                           has_flags, reset_after);
}

template <class T>
ffi::Error GruBackward(ffi::ThreadPool& pool, const Sizes& s, int64_t threads, bool need_dxs,
                       bool has_dys, const View& xs, const View& wx,
                       const View& wh, const View& h0,
                       const View& ys, const View& acts,
                       const View& dys, const View& dhT, T* dxs, T* dwx,
                       T* dwh, T* db, T* dbhn, T* dh0, const uint8_t* flags, bool after) {
  const int64_t G = 3 * s.H, blk = block_steps(s.T, s.B, 2 * G * sizeof(T));
  const int64_t BH = s.B * s.H;
  std::vector<T> whT = transposed(in<T>(wh), s.H, G), dzx(blk * s.B * G), dzh(blk * s.B * G);
  std::vector<T> restart(flags ? BH : 0), drh(after ? 0 : BH);  // dh0 from the restarts
  std::memcpy(dh0, in<T>(dhT), sizeof(T) * BH);
  GruBwd<T> a{s.T,        s.B,       s.I,       s.H,        whT.data(),
              in<T>(h0),  in<T>(ys), in<T>(acts), has_dys ? in<T>(dys) : nullptr,
              dh0,        flags ? restart.data() : nullptr, dzx.data(), dzh.data(),
              drh.data(), flags,     after};
  const int64_t n = chunks(pool, threads, s.B);
  const auto& o = ops<T>();
  auto sweep = [&](int64_t k, int64_t t0, int64_t t1) {
    int64_t b0, b1;
    split(s.B, n, k, b0, b1);
    o.gru_backward(a, b0, b1, t0, t1);
  };
  auto none = [](int64_t, int64_t, int64_t, int64_t, bool) {};
  backward_blocks<T>(pool, n, s, G, blk, sweep, none, in<T>(xs), in<T>(wx), in<T>(h0), in<T>(ys),
                     after ? nullptr : in<T>(acts) + 3 * s.H, dzx.data(), dzh.data(), dwx, dwh,
                     db, after ? dbhn : nullptr, need_dxs ? dxs : nullptr, flags);
  for (int64_t k = 0; flags && k < BH; ++k) dh0[k] += restart[k];
  return ffi::Error::Success();
}

// (xs, w_x, w_h, h0, ys, acts, dys, dhT) -> (dxs, dw_x, dw_h, db, db_hn, dh0); without
// `reset_after`, db_hn is a placeholder, left unwritten
ffi::Error GruBackwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer xs, ffi::AnyBuffer wx,
                           ffi::AnyBuffer wh, ffi::AnyBuffer /*bhn*/, ffi::AnyBuffer h0,
                           ffi::AnyBuffer ys,
                           ffi::AnyBuffer acts, ffi::AnyBuffer dys, ffi::AnyBuffer dhT,
                           ffi::AnyBuffer flags, ffi::Result<ffi::AnyBuffer> dxs,
                           ffi::Result<ffi::AnyBuffer> dwx, ffi::Result<ffi::AnyBuffer> dwh,
                           ffi::Result<ffi::AnyBuffer> db, ffi::Result<ffi::AnyBuffer> dbhn,
                           ffi::Result<ffi::AnyBuffer> dh0, int64_t threads, bool need_dxs,
                           bool has_dys, bool has_flags, bool reset_after) {
  const Lead L = leading(xs);
  Sizes s;
  if (auto e = sizes(xs, wx, wh, 3, L, s); e.failure()) return e;
  const int64_t G = 3 * s.H;
  if (!dims_are(h0, L, {s.B, s.H}) || !dims_are(ys, L, {s.T, s.B, s.H}) ||
      !dims_are(acts, L, {s.T, s.B, 4 * s.H}) || !dims_are(dhT, L, {s.B, s.H}) ||
      (has_dys && !dims_are(dys, L, {s.T, s.B, s.H})) ||
      (need_dxs && !dims_are(*dxs, L, {s.T, s.B, s.I})) || !dims_are(*dwx, L, {s.I, G}) ||
      !dims_are(*dwh, L, {s.H, G}) || !dims_are(*db, L, {G}) ||
      (reset_after && !dims_are(*dbhn, L, {s.H})) ||
      !dims_are(*dh0, L, {s.B, s.H}))
    return shape_error("a residual, cotangent or gradient has the wrong shape");
  const uint8_t* v;
  if (!step_flags(flags, has_flags, s, L, v)) return shape_error("the step flags must be [T, B]");
  return for_members(xs, L, [&](auto zero, int64_t m) {
    using T = decltype(zero);
    auto at = [&](auto& buf) { return member(buf, L, m); };
    GruBackward<T>(pool, s, threads, need_dxs, has_dys, at(xs), at(wx), at(wh), at(h0), at(ys),
                   at(acts), has_dys ? at(dys) : View{nullptr}, at(dhT),
                   need_dxs ? out<T>(at(dxs)) : nullptr, out<T>(at(dwx)), out<T>(at(dwh)),
                   out<T>(at(db)), out<T>(at(dbhn)), out<T>(at(dh0)), flags_of(v, s, m),
                   reset_after);
  });
}

}  // namespace

#define LJ_ARG .Arg<ffi::AnyBuffer>()
#define LJ_RET .Ret<ffi::AnyBuffer>()
#define LJ_ARGS2 LJ_ARG LJ_ARG
#define LJ_ARGS4 LJ_ARGS2 LJ_ARGS2

// (xs, w_x, w_h, b, peep, h0, c0, flags) -> (ys, hT, cT); peep a placeholder without peephole
XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmjaxLstmForward, LstmForwardImpl,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>() LJ_ARGS4 LJ_ARGS4
                                  LJ_RET LJ_RET LJ_RET.Attr<int64_t>("threads")
                                  .Attr<bool>("has_flags")
                                  .Attr<bool>("peephole"));

// (xs, w_x, w_h, b, peep, h0, c0, flags) -> (ys, hT, cT, acts, cs)
XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmjaxLstmForwardTrain, LstmForwardTrainImpl,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>() LJ_ARGS4 LJ_ARGS4
                                  LJ_RET LJ_RET LJ_RET LJ_RET LJ_RET.Attr<int64_t>("threads")
                                  .Attr<bool>("has_flags")
                                  .Attr<bool>("peephole"));

// (xs, w_x, w_h, peep, h0, c0, ys, acts, cs, dys, dhT, dcT, flags)
//   -> (dxs, dw_x, dw_h, db, dpeep, dh0, dc0)
XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmjaxLstmBackward, LstmBackwardImpl,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>() LJ_ARGS4 LJ_ARGS4 LJ_ARGS4
                                  LJ_ARG LJ_RET LJ_RET LJ_RET LJ_RET LJ_RET LJ_RET LJ_RET
                                  .Attr<int64_t>("threads")
                                  .Attr<bool>("need_dxs")
                                  .Attr<bool>("has_dys")
                                  .Attr<bool>("has_flags")
                                  .Attr<bool>("peephole"));

// (xs, w_x, w_h, b, b_hn, h0, flags) -> (ys, hT); b_hn a placeholder without reset_after
XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmjaxGruForward, GruForwardImpl,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>() LJ_ARGS4 LJ_ARGS2 LJ_ARG
                                  LJ_RET LJ_RET.Attr<int64_t>("threads")
                                  .Attr<bool>("has_flags")
                                  .Attr<bool>("reset_after"));

// (xs, w_x, w_h, b, b_hn, h0, flags) -> (ys, hT, acts)
XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmjaxGruForwardTrain, GruForwardTrainImpl,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>() LJ_ARGS4 LJ_ARGS2 LJ_ARG
                                  LJ_RET LJ_RET LJ_RET.Attr<int64_t>("threads")
                                  .Attr<bool>("has_flags")
                                  .Attr<bool>("reset_after"));

// (xs, w_x, w_h, b_hn, h0, ys, acts, dys, dhT, flags) -> (dxs, dw_x, dw_h, db, db_hn, dh0)
XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmjaxGruBackward, GruBackwardImpl,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>() LJ_ARGS4 LJ_ARGS4 LJ_ARGS2
                                  LJ_RET LJ_RET LJ_RET LJ_RET LJ_RET LJ_RET
                                  .Attr<int64_t>("threads")
                                  .Attr<bool>("need_dxs")
                                  .Attr<bool>("has_dys")
                                  .Attr<bool>("has_flags")
                                  .Attr<bool>("reset_after"));

// Which matrix kernel this CPU got: 2 AVX-512, 1 AVX2 + FMA, 0 the baseline build.
extern "C" int LstmjaxFusedIsa() { return kIsa; }

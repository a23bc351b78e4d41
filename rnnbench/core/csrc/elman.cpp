// The Elman recurrence and its back-propagation through time as sequential loops
// (Deep Learning, eqs. 10.8 and 10.18-10.28), the only part of BPTT that must run
// step by step.  The input term b + U x^(t) and the output layer o^(t) = c + V h^(t)
// are batched matrix products done by the caller.
//
//   forward:   h^(t) = tanh(a^(t)),  a^(t) = [b + U x^(t)] + W h^(t-1),  h^(0) = 0
//   backward:  dL/dh^(t) = g^(t) + W^T delta^(t+1),  delta^(t) = (1 - h^(t)^2) * dL/dh^(t)
//
// Each step is one BLAS call into a preallocated buffer (gemv at batch 1, gemm
// otherwise) and one elementwise loop: no tensor is created, nothing is dispatched.
// BLAS is the one libtorch links (its Fortran symbols), tanh is SLEEF's vectorised
// one libtorch links; where libtorch exports neither, the step goes through
// at::addmm_out and std::tanh instead (slower: one ATen dispatch per step).
//
// The functions are registered as operators (torch.ops.rnnbench_elman.*), so
// torch's dispatch modes - the FLOP counter, the saved-bytes recorder - see them.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <torch/library.h>

#include <cmath>
#include <type_traits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*,
            const float*, const int*, const float*, const int*, const float*, float*,
            const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*,
            const double*, const int*, const double*, const int*, const double*, double*,
            const int*) __attribute__((weak));
void sgemv_(const char*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemv_(const char*, const int*, const int*, const double*, const double*, const int*,
            const double*, const int*, const double*, double*, const int*) __attribute__((weak));
#if defined(__x86_64__)
__m256 Sleef_tanhf8_u10(__m256) __attribute__((weak));
__m256d Sleef_tanhd4_u10(__m256d) __attribute__((weak));
#endif
}

namespace {

bool have_blas() { return sgemm_ && dgemm_ && sgemv_ && dgemv_; }

// c (B, H), row-major, += m (B, H) @ op(w), op(w) = w^T when trans_w, else w; w is (H, H)
// row-major.  In BLAS's column-major terms c^T += op(w)^T m^T.
template <typename T>
void gemm(bool trans_w, int B, int H, const T* w, const T* m, T* c) {
  const T one = 1;
  const int inc = 1;
  const char t = trans_w ? 'T' : 'N';
  if constexpr (std::is_same_v<T, float>) {
    if (B == 1) sgemv_(&t, &H, &H, &one, w, &H, m, &inc, &one, c, &inc);
    else sgemm_(&t, "N", &H, &B, &H, &one, w, &H, m, &H, &one, c, &H);
  } else {
    if (B == 1) dgemv_(&t, &H, &H, &one, w, &H, m, &inc, &one, c, &inc);
    else dgemm_(&t, "N", &H, &B, &H, &one, w, &H, m, &H, &one, c, &H);
  }
}

// x[i] = tanh(x[i]), SLEEF's 1-ulp vectorised tanh where the CPU has AVX.
#if defined(__x86_64__)
__attribute__((target("avx"))) void tanh_avx(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, Sleef_tanhf8_u10(_mm256_loadu_ps(x + i)));
  for (; i < n; ++i) x[i] = std::tanh(x[i]);
}
__attribute__((target("avx"))) void tanh_avx(double* x, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) _mm256_storeu_pd(x + i, Sleef_tanhd4_u10(_mm256_loadu_pd(x + i)));
  for (; i < n; ++i) x[i] = std::tanh(x[i]);
}
bool have_sleef() {
  static const bool ok = Sleef_tanhf8_u10 && Sleef_tanhd4_u10 && __builtin_cpu_supports("avx");
  return ok;
}
#else
template <typename T> void tanh_avx(T*, int64_t) {}
bool have_sleef() { return false; }
#endif

template <typename T> void tanh_inplace(T* x, int64_t n) {
  if (have_sleef()) tanh_avx(x, n);
  else for (int64_t i = 0; i < n; ++i) x[i] = std::tanh(x[i]);
}

void check(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.device().is_cpu(), name, ": the compiled recurrence runs on the CPU only");
  TORCH_CHECK(t.dim() == dim, name, ": expected ", dim, " dimensions, got ", t.dim());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble,
              name, ": float32 or float64 only, got ", t.scalar_type());
}

}  // namespace

// The loop both directions share: out (tau, B, H) starts as x, then step by step (t up,
// or down when ``reverse``) out[t] += op(W) s, s = out[t-1] (out[t+1] reversed) or, with
// ``given``, given[t] for every t, and ``finish(t, out[t])``.  op(W) = W^T forward (row-major
// h @ W^T), W reversed (delta @ W).
template <typename Finish>
at::Tensor recur(const at::Tensor& x, const at::Tensor& W, const at::Tensor* given, bool reverse,
                 const char* name, Finish finish) {
  const int64_t tau = x.size(0), B = x.size(1), H = x.size(2);
  TORCH_CHECK(W.size(0) == H && W.size(1) == H, "W: expected (", H, ", ", H, ")");
  if (given)
    TORCH_CHECK(given->sizes() == x.sizes(), name, ": expected the shape of ", reverse ? "h" : "a");
  at::Tensor out = x.contiguous().clone();
  at::Tensor w = W.contiguous();
  at::Tensor gc = given ? given->contiguous() : out;
  const int64_t n = B * H;
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "elman_recur", [&] {
    scalar_t* op = out.data_ptr<scalar_t>();
    const scalar_t* gp = given ? gc.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    for (int64_t i = 0; i < tau; ++i) {
      const int64_t t = reverse ? tau - 1 - i : i, s = reverse ? t + 1 : t - 1;
      scalar_t* ot = op + t * n;
      if (gp || i > 0) {
        const scalar_t* src = gp ? gp + t * n : op + s * n;
        if (have_blas()) gemm(!reverse, B, H, wp, src, ot);
        else {
          at::Tensor row = out.select(0, t);
          at::Tensor wt = reverse ? w : w.t();
          at::addmm_out(row, row, given ? gc.select(0, t) : out.select(0, s), wt);
        }
      }
      finish(t, ot, n);
    }
  });
  return out;
}

// h (tau, B, H) from a (tau, B, H) = b + U x^(t), and W (H, H).  With ``prev``
// (tau, B, H) given, step t reads prev[t] in place of h^(t-1), every step t included:
// the same operations, one step after another, none waiting for the one before (the
// chain's control, rnnbench.harness.chain).
at::Tensor forward_from(const at::Tensor& a, const at::Tensor& W, const at::Tensor* prev) {
  check(a, "a", 3);
  check(W, "W", 2);
  return recur(a, W, prev, false, "prev",
               [](int64_t, auto* ht, int64_t n) { tanh_inplace(ht, n); });
}

at::Tensor forward(const at::Tensor& a, const at::Tensor& W) { return forward_from(a, W, nullptr); }

at::Tensor forward_steps(const at::Tensor& a, const at::Tensor& W, const at::Tensor& prev) {
  return forward_from(a, W, &prev);
}

// delta (tau, B, H) = dL/da^(t) from g (tau, B, H) = dL/dh^(t) through the outputs,
// h (tau, B, H) and W.  With ``next`` given, step t reads next[t] in place of
// delta^(t+1), every step t included (the chain's control, as forward_steps).
at::Tensor backward_from(const at::Tensor& g, const at::Tensor& h, const at::Tensor& W,
                         const at::Tensor* next) {
  check(g, "g", 3);
  check(h, "h", 3);
  check(W, "W", 2);
  TORCH_CHECK(g.sizes() == h.sizes(), "g: expected the shape of h");
  at::Tensor hc = h.contiguous();
  return recur(g, W, next, true, "next", [&](int64_t t, auto* dt, int64_t n) {
    using T = std::remove_pointer_t<decltype(dt)>;
    const T* ht = hc.const_data_ptr<T>() + t * n;
    for (int64_t i = 0; i < n; ++i) dt[i] *= T(1) - ht[i] * ht[i];
  });
}

at::Tensor backward(const at::Tensor& g, const at::Tensor& h, const at::Tensor& W) {
  return backward_from(g, h, W, nullptr);
}

at::Tensor backward_steps(const at::Tensor& g, const at::Tensor& h, const at::Tensor& W,
                          const at::Tensor& next) {
  return backward_from(g, h, W, &next);
}

bool fast() { return have_blas() && have_sleef(); }

TORCH_LIBRARY(rnnbench_elman, m) {
  m.def("forward(Tensor a, Tensor W) -> Tensor");
  m.def("backward(Tensor g, Tensor h, Tensor W) -> Tensor");
  m.def("forward_steps(Tensor a, Tensor W, Tensor prev) -> Tensor");
  m.def("backward_steps(Tensor g, Tensor h, Tensor W, Tensor next) -> Tensor");
  m.def("fast() -> bool", &fast);
}

TORCH_LIBRARY_IMPL(rnnbench_elman, CPU, m) {
  m.impl("forward", &forward);
  m.impl("backward", &backward);
  m.impl("forward_steps", &forward_steps);
  m.impl("backward_steps", &backward_steps);
}

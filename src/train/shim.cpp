// What the trainer needs from libtorch that tch 0.24 does not bind: autocast with a chosen
// device type and dtype (tch's `autocast` is CUDA fp16 only), PyTorch's fused Adam
// (`torch.optim.Adam(fused=True)`: one multi-tensor kernel per step instead of several kernels
// per variable), and the gradient scaler's non-finite check. A C ABI over at::Tensor pointers
// (tch's `C_tensor` is an `at::Tensor*`); every function returns null on success, else an
// error message the caller frees with covidx_free_error.
#include <ATen/autocast_mode.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/_amp_foreach_non_finite_check_and_unscale.h>
#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/empty.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <vector>

namespace {

// Runs `f`, turning an exception into an error message.
template <class F>
char *guard(F f) {
  try {
    f();
    return nullptr;
  } catch (const std::exception &e) {
    return strdup(e.what());
  } catch (...) {
    return strdup("unknown C++ exception");
  }
}

at::DeviceType device_type(int device) { return device == 1 ? at::kCUDA : at::kCPU; }

}  // namespace

extern "C" {

void covidx_free_error(char *e) { free(e); }

// Turns autocast on for `device` (0 CPU, 1 CUDA) with the dtype `scalar_type` (c10's
// ScalarType code: 5 Half, 15 BFloat16); the previous state goes to `was_enabled` and
// `was_type` for covidx_autocast_exit.
char *covidx_autocast_enter(int device, int scalar_type, int *was_enabled, int *was_type) {
  return guard([&] {
    auto t = device_type(device);
    *was_enabled = at::autocast::is_autocast_enabled(t) ? 1 : 0;
    *was_type = static_cast<int>(at::autocast::get_autocast_dtype(t));
    at::autocast::set_autocast_dtype(t, static_cast<at::ScalarType>(scalar_type));
    at::autocast::set_autocast_enabled(t, true);
    at::autocast::increment_nesting();
  });
}

// Restores the state covidx_autocast_enter saved; the cast cache is cleared when the outermost
// autocast region ends (as torch.autocast does).
char *covidx_autocast_exit(int device, int was_enabled, int was_type) {
  return guard([&] {
    auto t = device_type(device);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(t, was_enabled != 0);
    at::autocast::set_autocast_dtype(t, static_cast<at::ScalarType>(was_type));
  });
}

// One Adam step (weight decay `wd`, no amsgrad) over the variables in `params` that have a
// gradient, with their moments `m`, `v`; `step` is the step count (a float tensor) after this
// step. With `grad_scale`, gradients are divided by it; with `found_inf` (1.0) the step is
// skipped: the gradient scaler's fused path.
char *covidx_fused_adam(at::Tensor *const *params, at::Tensor *const *m, at::Tensor *const *v,
                        size_t n, const at::Tensor *step, double lr, double beta1, double beta2,
                        double wd, double eps, const at::Tensor *grad_scale,
                        const at::Tensor *found_inf) {
  return guard([&] {
    std::vector<at::Tensor> ps, gs, ms, vs, steps;
    for (size_t i = 0; i < n; i++) {
      const at::Tensor &g = params[i]->grad();
      if (!g.defined()) continue;
      ps.push_back(*params[i]);
      gs.push_back(g);
      ms.push_back(*m[i]);
      vs.push_back(*v[i]);
      steps.push_back(*step);
    }
    if (ps.empty()) return;
    std::optional<at::Tensor> scale, inf;
    if (grad_scale) scale = *grad_scale;
    if (found_inf) inf = *found_inf;
    at::_fused_adam_(ps, gs, ms, vs, {}, steps, lr, beta1, beta2, wd, eps, false, false, scale,
                     inf);
  });
}

// A new uint8 tensor of `numel` elements in page-locked host memory from libtorch's caching
// host allocator (a block is reused only once the copies that read it have finished), for
// tch to own (`*out`, freed with `delete` by tch).
char *covidx_empty_pinned(int64_t numel, at::Tensor **out) {
  return guard([&] {
    auto t = at::empty({numel}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
    *out = new at::Tensor(std::move(t));
  });
}

// Drops the gradients of `params` (PyTorch's `zero_grad(set_to_none=True)`): the next backward
// writes fresh ones instead of a kernel per variable clearing the old.
char *covidx_clear_grads(at::Tensor *const *params, size_t n) {
  return guard([&] {
    for (size_t i = 0; i < n; i++) params[i]->mutable_grad().reset();
  });
}

// Sets `found_inf` to 1.0 when a gradient of `params` holds an inf or NaN, and multiplies the
// gradients by `inv_scale` (1.0 to only check).
char *covidx_amp_check(at::Tensor *const *params, size_t n, at::Tensor *found_inf,
                       const at::Tensor *inv_scale) {
  return guard([&] {
    std::vector<at::Tensor> gs;
    for (size_t i = 0; i < n; i++) {
      const at::Tensor &g = params[i]->grad();
      if (g.defined()) gs.push_back(g);
    }
    if (gs.empty()) return;
    at::_amp_foreach_non_finite_check_and_unscale_(gs, *found_inf, *inv_scale);
  });
}

}  // extern "C"

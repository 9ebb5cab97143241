// GCC's -fsanitize-coverage=trace-cmp also traces floating-point comparisons, through two hooks
// that libFuzzer's runtime does not define (clang traces integers only). libFuzzer has no use
// for those operands, so the hooks do nothing.

extern "C" {
void __sanitizer_cov_trace_cmpf(float, float) {}
void __sanitizer_cov_trace_cmpd(double, double) {}
}

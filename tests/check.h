/* check.h — the few assertion macros the C tests need.
 *
 * CHECK(cond) and CHECK_EQ_INT / CHECK_NEAR record a failure with file, line
 * and values, and the test goes on; a test's main returns check_exit(), which
 * is 1 if anything failed. GPU tests return CHECK_SKIP (77) without a GPU. */
#ifndef FKM_CHECK_H
#define FKM_CHECK_H

#include <math.h>
#include <stdio.h>

#define CHECK_SKIP 77

static int check_failures = 0;
static int check_count = 0;

#define CHECK(cond)                                                                  \
  do {                                                                               \
    check_count++;                                                                   \
    if (!(cond)) {                                                                   \
      check_failures++;                                                              \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);       \
    }                                                                                \
  } while (0)

#define CHECK_MSG(cond, ...)                                                         \
  do {                                                                               \
    check_count++;                                                                   \
    if (!(cond)) {                                                                   \
      check_failures++;                                                              \
      fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);       \
      fprintf(stderr, __VA_ARGS__);                                                  \
      fputc('\n', stderr);                                                           \
    }                                                                                \
  } while (0)

#define CHECK_EQ_INT(a, b)                                                           \
  do {                                                                               \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);                  \
    CHECK_MSG(check_a_ == check_b_, "%s = %lld, %s = %lld", #a, check_a_, #b, check_b_); \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                        \
  do {                                                                               \
    double check_a_ = (double)(a), check_b_ = (double)(b);                           \
    CHECK_MSG(fabs(check_a_ - check_b_) <= (tol), "%s = %.9g, %s = %.9g, tol %.3g",   \
              #a, check_a_, #b, check_b_, (double)(tol));                            \
  } while (0)

static inline int check_exit(const char *name) {
  if (check_failures) fprintf(stderr, "%s: %d of %d checks failed\n", name, check_failures, check_count);
  else printf("%s: %d checks passed\n", name, check_count);
  return check_failures ? 1 : 0;
}

#endif

/* test_stream_plan.c — the out-of-core fit's chunk plan: every point of every
 * batch falls in exactly one chunk, a chunk never crosses a batch unless it
 * holds whole batches, and each chunk has one of the plan's two shapes. */
#include "check.h"
#include "fit_stream.h"

#include <stdlib.h>

static void check_plan(int64_t B, int64_t N, int64_t cp) {
  fkm_fit_options o;
  fkm_fit_defaults(&o);
  o.B = B, o.N = N, o.D = 4, o.K = 2;
  fs_plan p;
  fs_make_plan(&o, cp, &p);
  unsigned char *seen = calloc((size_t)(B * N), 1);
  int64_t covered = 0, longest = 0;
  for (int64_t c = 0; c < p.nchunks; c++) {
    fs_chunk ch = fs_chunk_of(&p, &o, c);
    CHECK_MSG(ch.inst >= 0 && ch.inst < p.ninst, "B=%lld N=%lld cp=%lld chunk %lld: instance %d of %d", (long long)B,
              (long long)N, (long long)cp, (long long)c, ch.inst, p.ninst);
    CHECK_MSG(ch.nb == p.shape[ch.inst].B && ch.len == p.shape[ch.inst].N,
              "B=%lld N=%lld cp=%lld chunk %lld: %lldx%lld is not its instance's shape", (long long)B, (long long)N,
              (long long)cp, (long long)c, (long long)ch.nb, (long long)ch.len);
    CHECK(ch.b0 >= 0 && ch.b0 + ch.nb <= B && ch.n0 >= 0 && ch.n0 + ch.len <= N && ch.len > 0 && ch.nb > 0);
    if (!p.whole) CHECK(ch.nb == 1);
    if (p.whole) CHECK(ch.n0 == 0 && ch.len == N);
    longest = ch.nb * ch.len > longest ? ch.nb * ch.len : longest;
    for (int64_t b = ch.b0; b < ch.b0 + ch.nb && b < B; b++)
      for (int64_t n = ch.n0; n < ch.n0 + ch.len && n < N; n++) {
        CHECK_MSG(!seen[b * N + n], "B=%lld N=%lld cp=%lld: point %lld of batch %lld in two chunks", (long long)B,
                  (long long)N, (long long)cp, (long long)n, (long long)b);
        seen[b * N + n] = 1;
        covered++;
      }
  }
  CHECK_MSG(covered == B * N, "B=%lld N=%lld cp=%lld: %lld of %lld points covered", (long long)B, (long long)N,
            (long long)cp, (long long)covered, (long long)(B * N));
  CHECK_MSG(longest == p.cap, "B=%lld N=%lld cp=%lld: largest chunk %lld, cap %lld", (long long)B, (long long)N,
            (long long)cp, (long long)longest, (long long)p.cap);
  CHECK(p.cap <= cp);
  free(seen);
}

int main(void) {
  const int64_t Bs[] = {1, 2, 3, 7};
  const int64_t Ns[] = {1, 5, 100, 1000, 1001};
  const int64_t cps[] = {1, 3, 64, 99, 100, 101, 250, 999, 1000, 1001, 2000, 2002, 3003, 100000};
  for (size_t i = 0; i < sizeof Bs / sizeof Bs[0]; i++)
    for (size_t j = 0; j < sizeof Ns / sizeof Ns[0]; j++)
      for (size_t k = 0; k < sizeof cps / sizeof cps[0]; k++) check_plan(Bs[i], Ns[j], cps[k]);
  /* Whole batches: 7 batches of 100 in chunks of 250 points = 2 batches each, the last holds 1. */
  fkm_fit_options o;
  fkm_fit_defaults(&o);
  o.B = 7, o.N = 100, o.D = 4, o.K = 2;
  fs_plan p;
  fs_make_plan(&o, 250, &p);
  CHECK(p.whole);
  CHECK_EQ_INT(p.per, 2);
  CHECK_EQ_INT(p.nchunks, 4);
  CHECK_EQ_INT(p.ninst, 2);
  CHECK_EQ_INT(p.shape[1].B, 1);
  /* Ranges: N = 1001 in chunks of 250: 5 per batch, the last of 1 point. */
  o.B = 2, o.N = 1001;
  fs_make_plan(&o, 250, &p);
  CHECK(!p.whole);
  CHECK_EQ_INT(p.nchunks, 10);
  CHECK_EQ_INT(p.shape[1].N, 1);
  return check_exit("test_stream_plan");
}

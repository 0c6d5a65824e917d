/* test_npy.c — unit tests of harness/npy.c: write/read round trips, dtype
 * conversion on load, and hand-crafted bad files that must be rejected with a
 * message naming the problem. Files live in a fresh directory under /tmp that
 * is removed at the end. */
#define _POSIX_C_SOURCE 200809L

#include "check.h"
#include "dtype.h"
#include "error.h"
#include "npy.h"

#include <math.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char temp_dir[64];
static char created[64][256]; /* every file written, removed at the end */
static int n_created;

static const char *temp_file(const char *name) {
  snprintf(created[n_created], sizeof created[n_created], "%s/%s", temp_dir, name);
  return created[n_created++];
}

static int message_contains(const char *needle) { return strstr(fkm_last_error(), needle) != NULL; }

/* Writes a .npy file by hand: magic, version, header `dict` padded to a
 * 64-byte boundary, then `data_len` raw bytes. */
static const char *write_raw_npy(const char *name, int major, const char *dict, const void *data, size_t data_len) {
  const char *path = temp_file(name);
  size_t prefix = major == 1 ? 10 : 12;
  size_t total = (prefix + strlen(dict) + 1 + 63) / 64 * 64;
  size_t header_len = total - prefix;
  unsigned char *buf = calloc(1, total);
  memcpy(buf, "\x93NUMPY", 6);
  buf[6] = (unsigned char)major;
  buf[7] = 0;
  for (size_t b = 0; b < prefix - 8; b++) buf[8 + b] = (unsigned char)(header_len >> (8 * b));
  memset(buf + prefix, ' ', header_len);
  memcpy(buf + prefix, dict, strlen(dict));
  buf[total - 1] = '\n';
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (f) {
    fwrite(buf, 1, total, f);
    if (data_len) fwrite(data, 1, data_len, f);
    fclose(f);
  }
  free(buf);
  return path;
}

static void test_round_trip_f32_2d(void) {
  const char *path = temp_file("f32_2d.npy");
  float values[3 * 4];
  for (int i = 0; i < 12; i++) values[i] = (float)i * 0.25f - 1.0f;
  int64_t shape[2] = {3, 4};
  CHECK_EQ_INT(fkm_npy_write(path, FKM_NPY_F32, 2, shape, values), FKM_OK);

  fkm_npy_header h;
  CHECK_EQ_INT(fkm_npy_read_header(path, &h), FKM_OK);
  CHECK_EQ_INT(h.type, FKM_NPY_F32);
  CHECK_EQ_INT(h.ndim, 2);
  CHECK_EQ_INT(h.shape[0], 3);
  CHECK_EQ_INT(h.shape[1], 4);
  CHECK_EQ_INT(h.data_offset % 64, 0);

  /* Header layout: version 1.0, padded with spaces, ending in '\n'. */
  FILE *f = fopen(path, "rb");
  unsigned char head[256] = {0};
  size_t got = f ? fread(head, 1, sizeof head, f) : 0;
  if (f) fclose(f);
  CHECK_EQ_INT(got, h.data_offset + 12 * 4);
  CHECK(memcmp(head, "\x93NUMPY\x01\x00", 8) == 0);
  CHECK_EQ_INT(head[8] | (head[9] << 8), h.data_offset - 10);
  CHECK_EQ_INT(head[h.data_offset - 1], '\n');
  CHECK(strstr((const char *)head + 10, "'descr': '<f4'") != NULL);
  CHECK(strstr((const char *)head + 10, "'shape': (3, 4)") != NULL);

  float back[12];
  CHECK_EQ_INT(fkm_npy_load(path, 12, FKM_F32, back), FKM_OK);
  CHECK(memcmp(back, values, sizeof values) == 0);

  /* A prefix of the data loads; more than the file holds does not. */
  float first[5] = {0};
  CHECK_EQ_INT(fkm_npy_load(path, 5, FKM_F32, first), FKM_OK);
  CHECK(memcmp(first, values, sizeof first) == 0);
  float too_many[13];
  CHECK_EQ_INT(fkm_npy_load(path, 13, FKM_F32, too_many), FKM_ERR_INPUT);
  CHECK_MSG(message_contains("holds 12 elements but 13 are needed"), "%s", fkm_last_error());
}

static void test_round_trip_f16_3d(void) {
  const char *path = temp_file("f16_3d.npy");
  enum { COUNT = 2 * 3 * 5 };
  uint16_t halves[COUNT];
  for (int i = 0; i < COUNT; i++) halves[i] = fkm_f32_to_f16((float)i / 7.0f - 2.0f);
  int64_t shape[3] = {2, 3, 5};
  CHECK_EQ_INT(fkm_npy_write(path, FKM_NPY_F16, 3, shape, halves), FKM_OK);

  fkm_npy_header h;
  CHECK_EQ_INT(fkm_npy_read_header(path, &h), FKM_OK);
  CHECK_EQ_INT(h.type, FKM_NPY_F16);
  CHECK_EQ_INT(h.ndim, 3);
  CHECK_EQ_INT(h.shape[0], 2);
  CHECK_EQ_INT(h.shape[1], 3);
  CHECK_EQ_INT(h.shape[2], 5);
  CHECK_EQ_INT(h.data_offset % 64, 0);

  uint16_t back[COUNT];
  CHECK_EQ_INT(fkm_npy_load(path, COUNT, FKM_F16, back), FKM_OK);
  CHECK(memcmp(back, halves, sizeof halves) == 0);

  float as_f32[COUNT];
  CHECK_EQ_INT(fkm_npy_load(path, COUNT, FKM_F32, as_f32), FKM_OK);
  int exact = 1;
  for (int i = 0; i < COUNT; i++) exact &= as_f32[i] == fkm_f16_to_f32(halves[i]);
  CHECK(exact);

  uint16_t as_bf16[COUNT];
  CHECK_EQ_INT(fkm_npy_load(path, COUNT, FKM_BF16, as_bf16), FKM_OK);
  int rounded = 1;
  for (int i = 0; i < COUNT; i++) rounded &= as_bf16[i] == fkm_f32_to_bf16(fkm_f16_to_f32(halves[i]));
  CHECK(rounded);
}

static void test_round_trip_i32(void) {
  const char *path = temp_file("labels.npy");
  int32_t labels[2 * 6];
  for (int i = 0; i < 12; i++) labels[i] = i * 1000 - 3;
  int64_t shape[2] = {2, 6};
  CHECK_EQ_INT(fkm_npy_write(path, FKM_NPY_I32, 2, shape, labels), FKM_OK);

  fkm_npy_header h;
  CHECK_EQ_INT(fkm_npy_read_header(path, &h), FKM_OK);
  CHECK_EQ_INT(h.type, FKM_NPY_I32);
  CHECK_EQ_INT(h.shape[0], 2);
  CHECK_EQ_INT(h.shape[1], 6);

  /* The data bytes are the little-endian int32 values. */
  FILE *f = fopen(path, "rb");
  unsigned char raw[48] = {0};
  if (f) {
    fseek(f, (long)h.data_offset, SEEK_SET);
    CHECK_EQ_INT(fread(raw, 1, sizeof raw, f), sizeof raw);
    fclose(f);
  }
  int same = 1;
  for (int i = 0; i < 12; i++) {
    uint32_t v = (uint32_t)raw[4 * i] | ((uint32_t)raw[4 * i + 1] << 8) | ((uint32_t)raw[4 * i + 2] << 16) |
                 ((uint32_t)raw[4 * i + 3] << 24);
    same &= (int32_t)v == labels[i];
  }
  CHECK(same);

  /* Labels are not points: loading them as data is refused. */
  float points[12];
  CHECK_EQ_INT(fkm_npy_load(path, 12, FKM_F32, points), FKM_ERR_INPUT);
  CHECK_MSG(message_contains("int32"), "%s", fkm_last_error());
}

static void test_write_1d_and_reject_on_read(void) {
  const char *path = temp_file("one_d.npy");
  float v[5] = {1, 2, 3, 4, 5};
  int64_t shape[1] = {5};
  CHECK_EQ_INT(fkm_npy_write(path, FKM_NPY_F32, 1, shape, v), FKM_OK);
  fkm_npy_header h;
  CHECK_EQ_INT(fkm_npy_read_header(path, &h), FKM_ERR_INPUT);
  CHECK_MSG(message_contains("1-D array with shape (5,)"), "%s", fkm_last_error());
  CHECK_MSG(message_contains(path), "%s", fkm_last_error());
}

static void test_conversion_from_f32(void) {
  const char *path = temp_file("convert.npy");
  /* Values that round differently in fp16 and bf16, plus a subnormal fp16. */
  float values[8] = {1.0f, 1.0f + 1.0f / 2048.0f, 1.0f + 3.0f / 2048.0f, -3.14159265f,
                     65504.0f, 1e-6f, 0.1f, -0.0f};
  int64_t shape[2] = {2, 4};
  CHECK_EQ_INT(fkm_npy_write(path, FKM_NPY_F32, 2, shape, values), FKM_OK);

  uint16_t f16[8], bf16[8];
  CHECK_EQ_INT(fkm_npy_load(path, 8, FKM_F16, f16), FKM_OK);
  CHECK_EQ_INT(fkm_npy_load(path, 8, FKM_BF16, bf16), FKM_OK);
  for (int i = 0; i < 8; i++) {
    CHECK_EQ_INT(f16[i], fkm_f32_to_f16(values[i]));
    CHECK_EQ_INT(bf16[i], fkm_f32_to_bf16(values[i]));
  }
  /* Spot values: ties to even in fp16 (1 + 2^-11 -> 1.0, 1 + 3*2^-11 -> 1 + 2^-9). */
  CHECK_EQ_INT(f16[0], 0x3c00);
  CHECK_EQ_INT(f16[1], 0x3c00);
  CHECK_EQ_INT(f16[2], 0x3c02);
  CHECK_EQ_INT(f16[4], 0x7bff);
  CHECK_EQ_INT(bf16[0], 0x3f80);

  /* A finite float32 beyond the fp16 range would become Inf: rejected. */
  const char *big = temp_file("too_big_for_f16.npy");
  float big_values[4] = {1.0f, 2.0f, 1e6f, 3.0f};
  int64_t big_shape[2] = {2, 2};
  CHECK_EQ_INT(fkm_npy_write(big, FKM_NPY_F32, 2, big_shape, big_values), FKM_OK);
  CHECK_EQ_INT(fkm_npy_load(big, 4, FKM_F16, f16), FKM_ERR_INPUT);
  CHECK_MSG(message_contains("element 2 (row 1, column 0)") && message_contains("overflows fp16"), "%s",
            fkm_last_error());
  float ok32[4];
  CHECK_EQ_INT(fkm_npy_load(big, 4, FKM_F32, ok32), FKM_OK);
}

/* 2x2 float32 data for the hand-crafted files. */
static const float four_floats[4] = {1.0f, 2.0f, 3.0f, 4.0f};

static void expect_header_error(const char *path, const char *needle) {
  fkm_npy_header h;
  fkm_status st = fkm_npy_read_header(path, &h);
  CHECK_MSG(st == FKM_ERR_INPUT, "%s: status %s", path, fkm_status_name(st));
  CHECK_MSG(message_contains(needle), "%s: expected '%s' in: %s", path, needle, fkm_last_error());
  CHECK_MSG(message_contains(path), "%s: message does not name the file: %s", path, fkm_last_error());
}

static void test_bad_files(void) {
  const char *p;

  p = temp_file("bad_magic.npy");
  FILE *f = fopen(p, "wb");
  if (f) {
    fputs("PK\x03\x04 this is a zip, not an npy file", f);
    fclose(f);
  }
  expect_header_error(p, "not a .npy file");

  p = write_raw_npy("big_endian.npy", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", four_floats, 16);
  expect_header_error(p, "big-endian");

  p = write_raw_npy("f8.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 1), }", four_floats, 16);
  expect_header_error(p, "dtype '<f8' is not supported: convert to float32 or float16");

  p = write_raw_npy("fortran.npy", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", four_floats, 16);
  expect_header_error(p, "Fortran");

  p = write_raw_npy("truncated.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (10, 4), }", four_floats, 16);
  expect_header_error(p, "truncated");
  CHECK_MSG(message_contains("needs 160 data bytes") && message_contains("holds 16"), "%s", fkm_last_error());

  p = write_raw_npy("one_d_raw.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", four_floats, 16);
  expect_header_error(p, "1-D");

  p = write_raw_npy("zero_dim.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4), }", NULL, 0);
  expect_header_error(p, "zero-size dimension");

  p = write_raw_npy("structured.npy", 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 2), }",
                    four_floats, 16);
  expect_header_error(p, "structured");

  p = write_raw_npy("no_shape.npy", 1, "{'descr': '<f4', 'fortran_order': False, }", four_floats, 16);
  expect_header_error(p, "'shape' is missing");

  p = write_raw_npy("version4.npy", 4, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", four_floats, 16);
  expect_header_error(p, "version 4.0");

  p = write_raw_npy("garbage_header.npy", 1, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2, 2), }",
                    four_floats, 16);
  expect_header_error(p, "fortran_order");

  /* NaN / Inf: found on load, with the element's position. */
  float with_nan[10 * 4];
  for (int i = 0; i < 40; i++) with_nan[i] = (float)i;
  with_nan[38] = NAN;
  int64_t shape[2] = {10, 4};
  p = temp_file("nan.npy");
  CHECK_EQ_INT(fkm_npy_write(p, FKM_NPY_F32, 2, shape, with_nan), FKM_OK);
  float out[40];
  CHECK_EQ_INT(fkm_npy_load(p, 40, FKM_F32, out), FKM_ERR_INPUT);
  CHECK_MSG(message_contains("element 38 (row 9, column 2) is NaN"), "%s", fkm_last_error());
  /* Data before the NaN are fine. */
  CHECK_EQ_INT(fkm_npy_load(p, 38, FKM_F32, out), FKM_OK);

  uint16_t with_inf[2 * 2 * 3];
  for (int i = 0; i < 12; i++) with_inf[i] = fkm_f32_to_f16(1.0f);
  with_inf[7] = 0xfc00; /* -Inf in fp16 */
  int64_t shape3[3] = {2, 2, 3};
  p = temp_file("inf.npy");
  CHECK_EQ_INT(fkm_npy_write(p, FKM_NPY_F16, 3, shape3, with_inf), FKM_OK);
  CHECK_EQ_INT(fkm_npy_load(p, 12, FKM_F32, out), FKM_ERR_INPUT);
  CHECK_MSG(message_contains("element 7 (batch 1, row 0, column 1) is -Inf"), "%s", fkm_last_error());

  fkm_npy_header h;
  CHECK_EQ_INT(fkm_npy_read_header(temp_file("does_not_exist.npy"), &h), FKM_ERR_IO);
  CHECK_MSG(message_contains("does_not_exist.npy: cannot open"), "%s", fkm_last_error());
}

static void test_accepted_header_forms(void) {
  fkm_npy_header h;
  float out[4];
  const char *p;

  /* Version 2.0 and 3.0 (4-byte header length), Python 2 'L' integers,
   * byte-order forms that numpy reads as native (little-endian here). */
  p = write_raw_npy("v2.npy", 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", four_floats, 16);
  CHECK_EQ_INT(fkm_npy_read_header(p, &h), FKM_OK);
  CHECK_EQ_INT(h.data_offset % 64, 0);
  CHECK_EQ_INT(fkm_npy_load(p, 4, FKM_F32, out), FKM_OK);
  CHECK(memcmp(out, four_floats, sizeof out) == 0);

  p = write_raw_npy("v3.npy", 3, "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (1, 4)}", four_floats, 16);
  CHECK_EQ_INT(fkm_npy_read_header(p, &h), FKM_OK);
  CHECK_EQ_INT(h.shape[0], 1);
  CHECK_EQ_INT(h.shape[1], 4);

  p = write_raw_npy("py2.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 2L), }", four_floats, 16);
  CHECK_EQ_INT(fkm_npy_read_header(p, &h), FKM_OK);
  CHECK_EQ_INT(h.shape[1], 2);

  p = write_raw_npy("native.npy", 1, "{'descr': '=f4', 'fortran_order': False, 'shape': (2, 2), }", four_floats, 16);
  CHECK_EQ_INT(fkm_npy_read_header(p, &h), FKM_OK);
  CHECK_EQ_INT(h.type, FKM_NPY_F32);

  p = write_raw_npy("pipe.npy", 1, "{'descr': '|f2', 'fortran_order': False, 'shape': (2, 4), }", four_floats, 16);
  CHECK_EQ_INT(fkm_npy_read_header(p, &h), FKM_OK);
  CHECK_EQ_INT(h.type, FKM_NPY_F16);

  /* Key order is free; extra trailing bytes after the data are ignored. */
  float five[5] = {1, 2, 3, 4, 99};
  p = write_raw_npy("reordered.npy", 1, "{'shape': (2, 2), 'fortran_order': False, 'descr': '<f4'}", five, 20);
  CHECK_EQ_INT(fkm_npy_load(p, 4, FKM_F32, out), FKM_OK);
  CHECK(memcmp(out, four_floats, sizeof out) == 0);
}

static void test_write_argument_errors(void) {
  int64_t shape[2] = {2, 2};
  CHECK_EQ_INT(fkm_npy_write(temp_file("four_d.npy"), FKM_NPY_F32, 4, shape, four_floats), FKM_ERR_INPUT);
  int64_t negative[2] = {2, -1};
  CHECK_EQ_INT(fkm_npy_write(temp_file("negative.npy"), FKM_NPY_F32, 2, negative, four_floats), FKM_ERR_INPUT);
  CHECK_EQ_INT(fkm_npy_write("/nonexistent-dir/x.npy", FKM_NPY_F32, 2, shape, four_floats), FKM_ERR_IO);
}

/* fkm_npy_map: the same data and the same checks as a load, without a copy. */
static void test_map(void) {
  const char *path = temp_file("map_f16.npy");
  uint16_t halves[2 * 5 * 8];
  for (int i = 0; i < 80; i++) halves[i] = (uint16_t)(0x3C00 + i); /* 1.0 and up: finite */
  int64_t shape[3] = {2, 5, 8};
  CHECK_EQ_INT(fkm_npy_write(path, FKM_NPY_F16, 3, shape, halves), FKM_OK);
  fkm_npy_mapping m;
  CHECK_EQ_INT(fkm_npy_map(path, 80, FKM_F16, &m), FKM_OK);
  CHECK(m.data && memcmp(m.data, halves, sizeof halves) == 0);
  CHECK_EQ_INT((int)((uintptr_t)m.data % 64), 0);
  fkm_npy_unmap(&m);
  CHECK(m.base == NULL && m.data == NULL);
  fkm_npy_unmap(&m); /* twice: harmless */
  /* a conversion is needed: not mapped, the caller loads */
  CHECK_EQ_INT(fkm_npy_map(path, 80, FKM_F32, &m), FKM_ERR_NOT_SUPPORTED);
  CHECK_EQ_INT(fkm_npy_map(path, 80, FKM_BF16, &m), FKM_ERR_NOT_SUPPORTED);
  CHECK_EQ_INT(fkm_npy_map(path, 81, FKM_F16, &m), FKM_ERR_INPUT);
  CHECK_MSG(message_contains("holds 80 elements but 81 are needed"), "%s", fkm_last_error());
  /* non-finite values are found as a load finds them */
  float with_inf[4 * 4];
  for (int i = 0; i < 16; i++) with_inf[i] = (float)i;
  with_inf[13] = INFINITY;
  int64_t s2[2] = {4, 4};
  const char *bad = temp_file("map_inf.npy");
  CHECK_EQ_INT(fkm_npy_write(bad, FKM_NPY_F32, 2, s2, with_inf), FKM_OK);
  CHECK_EQ_INT(fkm_npy_map(bad, 16, FKM_F32, &m), FKM_ERR_INPUT);
  CHECK(m.base == NULL);
  CHECK_EQ_INT(fkm_npy_load(bad, 16, FKM_F32, with_inf), FKM_ERR_INPUT);
  /* a file cut short of what its header says */
  const char *cut = write_raw_npy("map_cut.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4), }",
                                  four_floats, sizeof four_floats);
  CHECK(fkm_npy_map(cut, 16, FKM_F32, &m) != FKM_OK);
  CHECK(m.base == NULL);
}

/* fkm_npy_write_from: a filler's error is the write's, and the half-written file goes. */
static int fills;
static fkm_status failing_fill(void *ctx, int64_t first, int64_t n, void *dst) {
  (void)ctx;
  (void)first;
  memset(dst, 0, (size_t)n * 4);
  return ++fills == 2 ? fkm_fail(FKM_ERR_CUDA, "planted filler failure") : FKM_OK;
}

static void test_write_from(void) {
  const char *path = temp_file("from.npy");
  int64_t shape[1] = {3 << 20}; /* three slices */
  fills = 0;
  CHECK_EQ_INT(fkm_npy_write_from(path, FKM_NPY_F32, 1, shape, failing_fill, NULL), FKM_ERR_CUDA);
  CHECK_MSG(message_contains("planted filler failure"), "%s", fkm_last_error());
  CHECK(access(path, F_OK) != 0);
}

int main(void) {
  snprintf(temp_dir, sizeof temp_dir, "/tmp/fkm_test_npy_XXXXXX");
  if (!mkdtemp(temp_dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_round_trip_f32_2d();
  test_round_trip_f16_3d();
  test_round_trip_i32();
  test_write_1d_and_reject_on_read();
  test_conversion_from_f32();
  test_bad_files();
  test_accepted_header_forms();
  test_write_argument_errors();
  test_map();
  test_write_from();
  for (int i = 0; i < n_created; i++) unlink(created[i]);
  rmdir(temp_dir);
  return check_exit("test_npy");
}

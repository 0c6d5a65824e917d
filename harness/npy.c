/* npy.c — reading and writing NumPy .npy files without NumPy.
 *
 * Real data sets (embeddings, features) reach the harness as .npy files, and
 * tests need to write small arrays (points, labels) that Python can read back.
 * The reader accepts only what the kernels can use directly — little-endian
 * float16/float32 in C order, 2-D or 3-D — plus int32 headers so tests can
 * round-trip labels; everything else fails with a message that names the file
 * and says what to change. Values are decoded byte by byte so the code does
 * not depend on the host's byte order. */
#define _POSIX_C_SOURCE 200809L

#include "npy.h"

#include "dtype.h"
#include "error.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* numpy itself refuses headers above 10 000 bytes by default; anything far
 * beyond that is a corrupt length field, not a real header. */
#define NPY_MAX_HEADER_BYTES (1 << 20)

/* Data are converted in slices of this many elements to bound temporary memory. */
#define NPY_CHUNK_ELEMENTS (1 << 20)

static int host_is_little_endian(void) {
  const uint16_t probe = 1;
  unsigned char first;
  memcpy(&first, &probe, 1);
  return first == 1;
}

static size_t npy_type_size(fkm_npy_type t) { return t == FKM_NPY_F16 ? 2 : 4; }

static const char *npy_type_descr(fkm_npy_type t) {
  switch (t) {
  case FKM_NPY_F32: return "<f4";
  case FKM_NPY_F16: return "<f2";
  case FKM_NPY_I32: return "<i4";
  }
  return "?";
}

/* ---- header dictionary parsing ------------------------------------------
 * The header is a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (100, 64), }
 * A tiny cursor-based parser covers exactly what numpy writes (and the 'L'
 * suffix of Python 2 era integers). */

typedef struct {
  const char *p;
  const char *end;
} header_cursor;

static void skip_spaces(header_cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int consume_char(header_cursor *c, char ch) {
  skip_spaces(c);
  if (c->p < c->end && *c->p == ch) {
    c->p++;
    return 1;
  }
  return 0;
}

/* Reads a quoted Python string ('...' or "...") into out; 0 on malformed input. */
static int read_quoted(header_cursor *c, char *out, size_t out_len) {
  skip_spaces(c);
  if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
  char quote = *c->p++;
  size_t n = 0;
  while (c->p < c->end && *c->p != quote) {
    if (n + 1 >= out_len) return 0;
    out[n++] = *c->p++;
  }
  if (c->p >= c->end) return 0;
  c->p++;
  out[n] = '\0';
  return 1;
}

static int starts_with_word(header_cursor *c, const char *word) {
  size_t n = strlen(word);
  return (size_t)(c->end - c->p) >= n && memcmp(c->p, word, n) == 0;
}

/* Reads one non-negative decimal integer (optionally followed by 'L'). */
static int read_dim(header_cursor *c, int64_t *out) {
  skip_spaces(c);
  if (c->p >= c->end || *c->p < '0' || *c->p > '9') return 0;
  int64_t v = 0;
  while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (int64_t)(*c->p - '0'), &v)) return 0;
    c->p++;
  }
  if (c->p < c->end && (*c->p == 'L' || *c->p == 'l')) c->p++;
  *out = v;
  return 1;
}

/* Formats a shape tuple the way Python prints it: (5,) or (3, 4). */
static void format_shape(char *out, size_t out_len, int ndim, const int64_t *shape) {
  size_t used = 0;
  used += (size_t)snprintf(out, out_len, "(");
  for (int i = 0; i < ndim && used < out_len; i++)
    used += (size_t)snprintf(out + used, out_len - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
  if (used < out_len) snprintf(out + used, out_len - used, ndim == 1 ? ",)" : ")");
}

typedef struct {
  char descr[64];
  int has_descr, has_fortran, has_shape;
  int fortran_order;
  int ndim;
  int64_t shape[8]; /* numpy allows 64 dims; anything past 8 is rejected as too many */
} header_fields;

static fkm_status malformed(const char *path, const char *what) {
  return fkm_fail(FKM_ERR_INPUT, "%s: malformed .npy header: %s", path, what);
}

static fkm_status parse_header_dict(const char *path, const char *text, size_t len, header_fields *f) {
  header_cursor c = {text, text + len};
  memset(f, 0, sizeof *f);
  if (!consume_char(&c, '{')) return malformed(path, "it does not start with '{'");
  for (;;) {
    if (consume_char(&c, '}')) break;
    char key[64];
    if (!read_quoted(&c, key, sizeof key)) return malformed(path, "expected a quoted key");
    if (!consume_char(&c, ':')) return malformed(path, "expected ':' after a key");
    skip_spaces(&c);
    if (strcmp(key, "descr") == 0) {
      if (c.p < c.end && *c.p == '[')
        return fkm_fail(FKM_ERR_INPUT, "%s: structured dtypes are not supported: save a plain float32 or float16 array",
                        path);
      if (!read_quoted(&c, f->descr, sizeof f->descr)) return malformed(path, "'descr' is not a quoted string");
      f->has_descr = 1;
    } else if (strcmp(key, "fortran_order") == 0) {
      if (starts_with_word(&c, "True")) {
        f->fortran_order = 1;
        c.p += 4;
      } else if (starts_with_word(&c, "False")) {
        f->fortran_order = 0;
        c.p += 5;
      } else {
        return malformed(path, "'fortran_order' is neither True nor False");
      }
      f->has_fortran = 1;
    } else if (strcmp(key, "shape") == 0) {
      if (!consume_char(&c, '(')) return malformed(path, "'shape' is not a tuple");
      f->ndim = 0;
      while (!consume_char(&c, ')')) {
        int64_t dim;
        if (!read_dim(&c, &dim)) return malformed(path, "'shape' holds something other than non-negative integers");
        if (f->ndim == (int)(sizeof f->shape / sizeof f->shape[0]))
          return fkm_fail(FKM_ERR_INPUT, "%s: array has more than %d dimensions: expected 2-D (N, D) or 3-D (B, N, D)",
                          path, (int)(sizeof f->shape / sizeof f->shape[0]));
        f->shape[f->ndim++] = dim;
        if (!consume_char(&c, ',')) {
          if (!consume_char(&c, ')')) return malformed(path, "expected ',' or ')' in 'shape'");
          break;
        }
      }
      f->has_shape = 1;
    } else {
      return fkm_fail(FKM_ERR_INPUT, "%s: malformed .npy header: unexpected key '%s'", path, key);
    }
    if (!consume_char(&c, ',')) {
      if (!consume_char(&c, '}')) return malformed(path, "expected ',' or '}' after a value");
      break;
    }
  }
  skip_spaces(&c);
  if (c.p != c.end) return malformed(path, "unexpected text after the closing '}'");
  if (!f->has_descr) return malformed(path, "the key 'descr' is missing");
  if (!f->has_fortran) return malformed(path, "the key 'fortran_order' is missing");
  if (!f->has_shape) return malformed(path, "the key 'shape' is missing");
  return FKM_OK;
}

/* Maps a descr string to a supported type, or fails naming what it is. */
static fkm_status parse_descr(const char *path, const char *descr, fkm_npy_type *out) {
  char order = descr[0];
  const char *kind = descr;
  if (order == '<' || order == '>' || order == '=' || order == '|') kind = descr + 1;
  else order = '='; /* no prefix: numpy reads it in the host's byte order */

  int known = 1;
  if (strcmp(kind, "f4") == 0) *out = FKM_NPY_F32;
  else if (strcmp(kind, "f2") == 0) *out = FKM_NPY_F16;
  else if (strcmp(kind, "i4") == 0) *out = FKM_NPY_I32;
  else known = 0;

  if (!known)
    return fkm_fail(FKM_ERR_INPUT, "%s: dtype '%s' is not supported: convert to float32 or float16", path, descr);
  if (order == '>')
    return fkm_fail(FKM_ERR_INPUT,
                    "%s: dtype '%s' is big-endian, which is not supported: convert with arr.astype('<%s')", path,
                    descr, kind);
  /* '=' and '|' mean "the reader's byte order" to numpy; that is little-endian
   * only on a little-endian host. */
  if (order != '<' && !host_is_little_endian())
    return fkm_fail(FKM_ERR_INPUT, "%s: dtype '%s' has no explicit byte order and this host is big-endian", path,
                    descr);
  return FKM_OK;
}

static int64_t file_size_of(FILE *f) {
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  return (int64_t)st.st_size;
}

static uint32_t read_le32(const unsigned char *b) {
  return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}

/* Reads and checks the header of an open file; on success *h describes the
 * data, which are known to be fully present in the file. */
static fkm_status read_header_from(FILE *f, const char *path, fkm_npy_header *h) {
  unsigned char preamble[12] = {0};
  size_t got = fread(preamble, 1, 10, f);
  if (got < 8 || memcmp(preamble, npy_magic, sizeof npy_magic) != 0)
    return fkm_fail(FKM_ERR_INPUT, "%s: not a .npy file (the magic string \\x93NUMPY is missing)", path);
  int major = preamble[6], minor = preamble[7];
  if (got < 10) return fkm_fail(FKM_ERR_INPUT, "%s: .npy file ends inside its preamble", path);

  int64_t header_len, preamble_len;
  if (major == 1) {
    header_len = (int64_t)preamble[8] | ((int64_t)preamble[9] << 8);
    preamble_len = 10;
  } else if (major == 2 || major == 3) {
    if (fread(preamble + 10, 1, 2, f) != 2) return fkm_fail(FKM_ERR_INPUT, "%s: .npy file ends inside its preamble", path);
    header_len = (int64_t)read_le32(preamble + 8);
    preamble_len = 12;
  } else {
    return fkm_fail(FKM_ERR_INPUT, "%s: .npy format version %d.%d is not supported (1.0, 2.0 and 3.0 are)", path,
                    major, minor);
  }
  if (header_len > NPY_MAX_HEADER_BYTES)
    return fkm_fail(FKM_ERR_INPUT, "%s: .npy header length %lld is implausibly large (corrupt file?)", path,
                    (long long)header_len);

  char *text = malloc((size_t)header_len + 1);
  if (!text) return fkm_fail(FKM_ERR_OOM, "%s: cannot allocate %lld bytes for the .npy header", path, (long long)header_len);
  if (fread(text, 1, (size_t)header_len, f) != (size_t)header_len) {
    free(text);
    return fkm_fail(FKM_ERR_INPUT, "%s: .npy file ends inside its %lld-byte header", path, (long long)header_len);
  }
  text[header_len] = '\0';
  header_fields fields;
  fkm_status st = parse_header_dict(path, text, (size_t)header_len, &fields);
  free(text);
  if (st != FKM_OK) return st;

  fkm_npy_type type = FKM_NPY_F32;
  FKM_TRY(parse_descr(path, fields.descr, &type));
  if (fields.fortran_order)
    return fkm_fail(FKM_ERR_INPUT,
                    "%s: Fortran-order arrays are not supported: save np.ascontiguousarray(arr) instead", path);

  char shape_text[160];
  format_shape(shape_text, sizeof shape_text, fields.ndim, fields.shape);
  if (fields.ndim != 2 && fields.ndim != 3)
    return fkm_fail(FKM_ERR_INPUT, "%s: %d-D array with shape %s: expected 2-D (N, D) or 3-D (B, N, D)", path,
                    fields.ndim, shape_text);

  int64_t count = 1;
  for (int i = 0; i < fields.ndim; i++) {
    if (fields.shape[i] == 0)
      return fkm_fail(FKM_ERR_INPUT, "%s: shape %s has a zero-size dimension", path, shape_text);
    if (__builtin_mul_overflow(count, fields.shape[i], &count))
      return fkm_fail(FKM_ERR_INPUT, "%s: shape %s is too large (element count overflows)", path, shape_text);
  }
  int64_t data_bytes;
  if (__builtin_mul_overflow(count, (int64_t)npy_type_size(type), &data_bytes))
    return fkm_fail(FKM_ERR_INPUT, "%s: shape %s is too large (byte count overflows)", path, shape_text);

  int64_t data_offset = preamble_len + header_len;
  int64_t file_bytes = file_size_of(f);
  if (file_bytes >= 0 && file_bytes - data_offset < data_bytes)
    return fkm_fail(FKM_ERR_INPUT,
                    "%s: truncated: shape %s of '%s' needs %lld data bytes but the file holds %lld after its "
                    "%lld-byte header",
                    path, shape_text, npy_type_descr(type), (long long)data_bytes,
                    (long long)(file_bytes > data_offset ? file_bytes - data_offset : 0), (long long)data_offset);

  memset(h, 0, sizeof *h);
  h->type = type;
  h->ndim = fields.ndim;
  for (int i = 0; i < fields.ndim; i++) h->shape[i] = fields.shape[i];
  h->data_offset = data_offset;
  return FKM_OK;
}

static fkm_status open_for_reading(const char *path, FILE **out) {
  if (!path || !path[0]) return fkm_fail(FKM_ERR_INPUT, "no .npy path given");
  FILE *f = fopen(path, "rb");
  if (!f) return fkm_fail(FKM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  *out = f;
  return FKM_OK;
}

/* Opens path and reads its header; the file is left open at the data on success only. */
static fkm_status open_with_header(const char *path, FILE **f, fkm_npy_header *h) {
  FKM_TRY(open_for_reading(path, f));
  fkm_status st = read_header_from(*f, path, h);
  if (st != FKM_OK) {
    fclose(*f);
    *f = NULL;
  }
  return st;
}

fkm_status fkm_npy_read_header(const char *path, fkm_npy_header *h) {
  FILE *f = NULL;
  FKM_TRY(open_for_reading(path, &f));
  fkm_status st = read_header_from(f, path, h);
  fclose(f);
  return st;
}

/* "(row 9, column 82)" or "(batch 1, row 9, column 82)" for flat index i. */
static void describe_position(char *out, size_t out_len, const fkm_npy_header *h, int64_t i) {
  int64_t cols = h->shape[h->ndim - 1];
  int64_t row = i / cols, col = i % cols;
  if (h->ndim == 3)
    snprintf(out, out_len, "(batch %lld, row %lld, column %lld)", (long long)(row / h->shape[1]),
             (long long)(row % h->shape[1]), (long long)col);
  else
    snprintf(out, out_len, "(row %lld, column %lld)", (long long)row, (long long)col);
}

static fkm_status reject_value(const char *path, const fkm_npy_header *h, int64_t i, float v, fkm_dtype target) {
  char where[96];
  describe_position(where, sizeof where, h, i);
  if (isnan(v)) return fkm_fail(FKM_ERR_INPUT, "%s: element %lld %s is NaN", path, (long long)i, where);
  if (isinf(v))
    return fkm_fail(FKM_ERR_INPUT, "%s: element %lld %s is %sInf", path, (long long)i, where, v < 0 ? "-" : "+");
  return fkm_fail(FKM_ERR_INPUT, "%s: element %lld %s = %g overflows %s (it would become Inf)", path, (long long)i,
                  where, (double)v, fkm_dtype_name(target));
}

/* Converts n raw little-endian elements (the file's elements first .. first + n - 1) into
 * dst[0 .. n - 1], rejecting values that are or would become non-finite. */
static fkm_status convert_slice(const char *path, const fkm_npy_header *h, const unsigned char *raw, int64_t first,
                                int64_t n, fkm_dtype dtype, void *dst) {
  for (int64_t j = 0; j < n; j++) {
    float v;
    uint16_t half_bits = 0;
    if (h->type == FKM_NPY_F32) {
      v = fkm_bits_f32(read_le32(raw + 4 * j));
    } else {
      half_bits = (uint16_t)(raw[2 * j] | (raw[2 * j + 1] << 8));
      v = fkm_f16_to_f32(half_bits);
    }
    if (!isfinite(v)) return reject_value(path, h, first + j, v, dtype);
    const int64_t k = first + j; /* the element's index in the file, for messages */
    switch (dtype) {
    case FKM_F32: ((float *)dst)[j] = v; break;
    case FKM_F16: {
      /* fp16 -> fp16 keeps the bits; fp32 -> fp16 rounds and may overflow. */
      uint16_t b = h->type == FKM_NPY_F16 ? half_bits : fkm_f32_to_f16(v);
      if (!isfinite(fkm_f16_to_f32(b))) return reject_value(path, h, k, v, dtype);
      ((uint16_t *)dst)[j] = b;
      break;
    }
    case FKM_BF16: {
      uint16_t b = fkm_f32_to_bf16(v);
      if (!isfinite(fkm_bf16_to_f32(b))) return reject_value(path, h, k, v, dtype);
      ((uint16_t *)dst)[j] = b;
      break;
    }
    default: return fkm_fail(FKM_ERR_INTERNAL, "unknown dtype %d", (int)dtype);
    }
  }
  return FKM_OK;
}

fkm_status fkm_npy_load(const char *path, int64_t count, fkm_dtype dtype, void *dst) {
  if ((unsigned)dtype >= FKM_DTYPE_COUNT) return fkm_fail(FKM_ERR_INPUT, "%s: unknown target dtype %d", path, (int)dtype);
  if (count < 0) return fkm_fail(FKM_ERR_INPUT, "%s: negative element count %lld requested", path, (long long)count);
  if (count > 0 && !dst) return fkm_fail(FKM_ERR_INPUT, "%s: no destination buffer", path);

  FILE *f = NULL;
  fkm_npy_header h;
  FKM_TRY(open_with_header(path, &f, &h));
  fkm_status st = FKM_OK;
  if (h.type == FKM_NPY_I32) {
    fclose(f);
    return fkm_fail(FKM_ERR_INPUT, "%s: holds int32 data ('<i4'); points must be float32 or float16", path);
  }
  int64_t available = 1;
  for (int i = 0; i < h.ndim; i++) available *= h.shape[i]; /* cannot overflow: checked with the header */
  if (count > available) {
    fclose(f);
    return fkm_fail(FKM_ERR_INPUT, "%s: holds %lld elements but %lld are needed", path, (long long)available,
                    (long long)count);
  }
  if (fseek(f, (long)h.data_offset, SEEK_SET) != 0) {
    fclose(f);
    return fkm_fail(FKM_ERR_IO, "%s: cannot seek to the data: %s", path, strerror(errno));
  }

  size_t elem = npy_type_size(h.type);
  int64_t chunk = count < NPY_CHUNK_ELEMENTS ? count : NPY_CHUNK_ELEMENTS;
  unsigned char *raw = malloc((size_t)(chunk > 0 ? chunk : 1) * elem);
  if (!raw) {
    fclose(f);
    return fkm_fail(FKM_ERR_OOM, "%s: cannot allocate a %lld-element read buffer", path, (long long)chunk);
  }
  for (int64_t done = 0; done < count && st == FKM_OK; done += chunk) {
    int64_t n = count - done < chunk ? count - done : chunk;
    size_t got = fread(raw, elem, (size_t)n, f);
    if (got != (size_t)n) {
      /* The size was checked against the header, so this is a read failure or a file shrinking under us. */
      st = fkm_fail(FKM_ERR_IO, "%s: read only %lld of %lld data bytes expected", path,
                    (long long)((done + (int64_t)got) * (int64_t)elem), (long long)(count * (int64_t)elem));
      break;
    }
    st = convert_slice(path, &h, raw, done, n, dtype, (unsigned char *)dst + (size_t)done * fkm_dtype_size(dtype));
  }
  free(raw);
  fclose(f);
  return st;
}

fkm_status fkm_npy_write_from(const char *path, fkm_npy_type type, int ndim, const int64_t *shape, fkm_npy_fill_fn fill,
                              void *ctx) {
  if (!path || !path[0]) return fkm_fail(FKM_ERR_INPUT, "no .npy path given");
  if (type != FKM_NPY_F32 && type != FKM_NPY_F16 && type != FKM_NPY_I32)
    return fkm_fail(FKM_ERR_INPUT, "%s: unknown .npy element type %d", path, (int)type);
  if (ndim < 1 || ndim > 3 || !shape)
    return fkm_fail(FKM_ERR_INPUT, "%s: can write 1 to 3 dimensions, not %d", path, ndim);
  int64_t count = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return fkm_fail(FKM_ERR_INPUT, "%s: negative dimension %lld", path, (long long)shape[i]);
    if (__builtin_mul_overflow(count, shape[i], &count))
      return fkm_fail(FKM_ERR_INPUT, "%s: element count overflows", path);
  }
  if (count > 0 && !fill) return fkm_fail(FKM_ERR_INPUT, "%s: no data to write", path);
  size_t elem = npy_type_size(type);

  /* Version 1.0 header, padded with spaces so that the data start at a
   * multiple of 64 bytes (what numpy does, and what keeps mmap'd data aligned). */
  char shape_text[160], dict[256];
  format_shape(shape_text, sizeof shape_text, ndim, shape);
  int dict_len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                          npy_type_descr(type), shape_text);
  size_t unpadded = 10 + (size_t)dict_len + 1; /* preamble, dict, '\n' */
  size_t total = (unpadded + 63) / 64 * 64;
  size_t header_len = total - 10;
  unsigned char *header = malloc(total);
  if (!header) return fkm_fail(FKM_ERR_OOM, "%s: cannot allocate the .npy header", path);
  memcpy(header, npy_magic, sizeof npy_magic);
  header[6] = 1;
  header[7] = 0;
  header[8] = (unsigned char)(header_len & 0xff);
  header[9] = (unsigned char)(header_len >> 8);
  memcpy(header + 10, dict, (size_t)dict_len);
  memset(header + 10 + dict_len, ' ', total - 10 - (size_t)dict_len - 1);
  header[total - 1] = '\n';

  FILE *f = fopen(path, "wb");
  if (!f) {
    free(header);
    return fkm_fail(FKM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
  }
  int ok = fwrite(header, 1, total, f) == total;
  free(header);

  /* A slice at a time: the filler's native-order elements, encoded little-endian. */
  const size_t slice = (size_t)(count < NPY_CHUNK_ELEMENTS ? count : NPY_CHUNK_ELEMENTS);
  unsigned char *buf = ok && count > 0 ? malloc(slice * elem) : NULL;
  unsigned char *src = ok && count > 0 ? malloc(slice * elem) : NULL;
  if (ok && count > 0 && (!buf || !src)) {
    free(buf);
    free(src);
    fclose(f);
    remove(path);
    return fkm_fail(FKM_ERR_OOM, "%s: cannot allocate a write buffer", path);
  }
  fkm_status fill_st = FKM_OK;
  for (int64_t done = 0; ok && done < count;) {
    int64_t n = count - done < NPY_CHUNK_ELEMENTS ? count - done : NPY_CHUNK_ELEMENTS;
    fill_st = fill(ctx, done, n, src);
    if (fill_st != FKM_OK) {
      ok = 0;
      break;
    }
    for (int64_t j = 0; j < n; j++) {
      const unsigned char *e = src + (size_t)j * elem;
      if (elem == 2) {
        uint16_t v;
        memcpy(&v, e, 2);
        buf[2 * j] = (unsigned char)(v & 0xff);
        buf[2 * j + 1] = (unsigned char)(v >> 8);
      } else {
        uint32_t v;
        memcpy(&v, e, 4);
        for (int b = 0; b < 4; b++) buf[4 * j + b] = (unsigned char)(v >> (8 * b));
      }
    }
    ok = fwrite(buf, elem, (size_t)n, f) == (size_t)n;
    done += n;
  }
  free(buf);
  free(src);
  int write_errno = errno;
  if (fclose(f) != 0 && ok) {
    ok = 0;
    write_errno = errno;
  }
  if (fill_st != FKM_OK) { /* the filler said why */
    remove(path);
    return fill_st;
  }
  if (!ok) {
    remove(path);
    return fkm_fail(FKM_ERR_IO, "%s: write failed: %s", path, strerror(write_errno));
  }
  return FKM_OK;
}

/* fkm_npy_write's source for fkm_npy_write_from: an array in host memory */
typedef struct {
  const void *data;
  size_t elem;
} npy_memory;

static fkm_status fill_from_memory(void *ctx, int64_t first, int64_t n, void *dst) {
  const npy_memory *m = ctx;
  memcpy(dst, (const unsigned char *)m->data + (size_t)first * m->elem, (size_t)n * m->elem);
  return FKM_OK;
}

fkm_status fkm_npy_write(const char *path, fkm_npy_type type, int ndim, const int64_t *shape, const void *data) {
  npy_memory m = {data, npy_type_size(type)};
  return fkm_npy_write_from(path, type, ndim, shape, data ? fill_from_memory : NULL, &m);
}

fkm_status fkm_npy_map(const char *path, int64_t count, fkm_dtype dtype, fkm_npy_mapping *m) {
  memset(m, 0, sizeof *m);
  FILE *f = NULL;
  fkm_npy_header h;
  FKM_TRY(open_with_header(path, &f, &h));
  fkm_status st = FKM_OK;
  const int same = (h.type == FKM_NPY_F16 && dtype == FKM_F16) || (h.type == FKM_NPY_F32 && dtype == FKM_F32);
  int64_t available = 1;
  for (int i = 0; i < h.ndim; i++) available *= h.shape[i];
  if (!same) {
    fclose(f);
    return fkm_fail(FKM_ERR_NOT_SUPPORTED, "%s: its elements need a conversion to %s", path, fkm_dtype_name(dtype));
  }
  if (count < 0 || count > available) {
    fclose(f);
    return fkm_fail(FKM_ERR_INPUT, "%s: holds %lld elements but %lld are needed", path, (long long)available,
                    (long long)count);
  }
  const size_t elem = npy_type_size(h.type);
  const size_t bytes = (size_t)h.data_offset + (size_t)count * elem;
  const int64_t size = file_size_of(f);
  if (size < 0) {
    fclose(f);
    return fkm_fail(FKM_ERR_IO, "%s: cannot tell its size (not a regular file?)", path);
  }
  if ((size_t)size < bytes) {
    fclose(f);
    return fkm_fail(FKM_ERR_INPUT, "%s: holds %lld bytes, %zu expected from its header", path, (long long)size,
                    bytes);
  }
  void *base = bytes > 0 ? mmap(NULL, bytes, PROT_READ, MAP_SHARED, fileno(f), 0) : NULL;
  const int map_errno = errno;
  fclose(f); /* the mapping stays */
  if (bytes > 0 && base == MAP_FAILED)
    return fkm_fail(FKM_ERR_IO, "%s: cannot map %zu bytes: %s", path, bytes, strerror(map_errno));
  if (base) (void)posix_madvise(base, bytes, POSIX_MADV_SEQUENTIAL);
  m->base = base;
  m->length = bytes;
  m->data = (const unsigned char *)base + h.data_offset;
  /* The load's check (every value finite) at memory speed: an all-ones exponent field
   * (little-endian data, read natively). The first offender gets the load's message. */
  int64_t bad = -1;
  if (h.type == FKM_NPY_F16) {
    const uint16_t *v = m->data;
    for (int64_t i = 0; i < count && bad < 0; i++)
      if ((v[i] & 0x7C00u) == 0x7C00u) bad = i;
  } else {
    const uint32_t *v = m->data;
    for (int64_t i = 0; i < count && bad < 0; i++)
      if ((v[i] & 0x7F800000u) == 0x7F800000u) bad = i;
  }
  if (bad >= 0) {
    uint32_t scratch;
    st = convert_slice(path, &h, (const unsigned char *)m->data + (size_t)bad * elem, bad, 1, dtype, &scratch);
    if (st == FKM_OK) st = fkm_fail(FKM_ERR_INTERNAL, "%s: element %lld is not finite", path, (long long)bad);
    fkm_npy_unmap(m);
  }
  return st;
}

void fkm_npy_unmap(fkm_npy_mapping *m) {
  if (m->base) munmap(m->base, m->length);
  memset(m, 0, sizeof *m);
}

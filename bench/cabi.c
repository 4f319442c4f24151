/*
 * The engine through its C ABI, as a host written in C calls it: the "C ABI" stage of
 * `make bench`. The same work as `betrace-bench engine` (ingest each batch at a simulated
 * fixed rate, tick, take the signals as OTLP log records; shut down at the end), through
 * ffi/betrace.h only.
 *
 *   bench-cabi BATCHES_PER_SECOND RULE_FILE... -- PROTO_FILE...
 *
 * PROTO_FILEs are the collector file exporter's `format: proto` output. Prints one JSON
 * object: batches, spans, signals.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "betrace.h"

static void die(const char *what, const char *detail) {
  fprintf(stderr, "bench-cabi: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(1);
}

/* Reads a whole file; *len gets its size. */
static uint8_t *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) die("cannot open", path);
  if (fseek(f, 0, SEEK_END) != 0) die("cannot seek", path);
  long size = ftell(f);
  if (size < 0) die("cannot size", path);
  rewind(f);
  uint8_t *buf = malloc((size_t)size + 1);
  if (!buf) die("out of memory", path);
  if (fread(buf, 1, (size_t)size, f) != (size_t)size) die("cannot read", path);
  fclose(f);
  *len = (size_t)size;
  return buf;
}

static void check(int32_t status, betrace_buf *err, const char *what) {
  if (status == BETRACE_OK) return;
  fprintf(stderr, "bench-cabi: %s failed (%d): %.*s\n", what, status, (int)err->len,
          err->ptr ? (const char *)err->ptr : "");
  exit(1);
}

/* Takes the waiting signals as OTLP log-record bytes, frees them, returns how many. */
static uint64_t take_logs(betrace_engine *engine, betrace_buf *err) {
  betrace_buf logs = {0};
  uint64_t count = 0;
  check(betrace_engine_take_logs(engine, &logs, &count, err), err, "betrace_engine_take_logs");
  betrace_buf_free(&logs);
  return count;
}

int main(int argc, char **argv) {
  if (argc < 4) die("usage: bench-cabi BATCHES_PER_SECOND RULE_FILE... -- PROTO_FILE...", NULL);
  double rate = atof(argv[1]);
  if (rate <= 0) die("BATCHES_PER_SECOND must be positive", argv[1]);

  int sep = 2;
  while (sep < argc && strcmp(argv[sep], "--") != 0) sep++;
  size_t n_rules = (size_t)(sep - 2);
  if (n_rules == 0 || sep >= argc - 1) die("need rule files, then --, then proto files", NULL);

  betrace_source *rules = calloc(n_rules, sizeof *rules);
  uint8_t **texts = calloc(n_rules, sizeof *texts);
  if (!rules || !texts) die("out of memory", NULL);
  for (size_t i = 0; i < n_rules; i++) {
    const char *path = argv[2 + i];
    texts[i] = slurp(path, &rules[i].text_len);
    rules[i].text = texts[i];
    rules[i].name = (const uint8_t *)path;
    rules[i].name_len = strlen(path);
  }

  betrace_buf err = {0};
  betrace_engine *engine = NULL;
  check(betrace_engine_new(rules, n_rules, NULL, &engine, &err), &err, "betrace_engine_new");
  for (size_t i = 0; i < n_rules; i++) free(texts[i]);
  free(texts);
  free(rules);

  /* One file in memory at a time, as the Rust stage does. */
  uint64_t step = (uint64_t)(1e9 / rate), now = 1000000000ull, signals = 0;
  size_t n_batches = 0;
  for (int f = sep + 1; f < argc; f++) {
    size_t size = 0, at = 0;
    uint8_t *file = slurp(argv[f], &size);
    while (at < size) {
      if (size - at < 4) die("truncated length prefix in", argv[f]);
      const uint8_t *p = file + at;
      size_t len = ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
      if (size - at - 4 < len) die("truncated message in", argv[f]);
      check(betrace_engine_ingest(engine, 0, p + 4, len, now, &err), &err, "betrace_engine_ingest");
      check(betrace_engine_tick(engine, now, &err), &err, "betrace_engine_tick");
      signals += take_logs(engine, &err);
      now += step;
      at += 4 + len;
      n_batches++;
    }
    free(file);
  }

  check(betrace_engine_shutdown(engine, now, &err), &err, "betrace_engine_shutdown");
  signals += take_logs(engine, &err);

  betrace_counters c;
  check(betrace_engine_counters(engine, &c), &err, "betrace_engine_counters");
  betrace_engine_free(engine);
  printf("{\"batches\": %zu, \"spans\": %llu, \"signals\": %llu, \"decode_errors\": %llu}\n",
         n_batches, (unsigned long long)c.spans_in, (unsigned long long)signals,
         (unsigned long long)c.decode_errors);
  return 0;
}

/* A plugin written in C against fdmd_plugin.h alone: proves the header is enough.
 *
 * Protocol: every DATA input is answered with "C:" and the same bytes, except:
 *   "STATUS"  submits {"v":1,"type":"status"} to the host and writes its JSON answer and "\n";
 *   "FAIL"    returns FDMD_RC_ERROR with a message for last_error;
 *   "ABORT"   aborts the process (for isolation tests).
 * Build variants used by the tests:
 *   -DPLUGIN_ABI_MAJOR=99  a plugin of an ABI major version the host does not know;
 *   -DNO_ENTRY             a library without the fdmd_plugin_entry_v1 symbol.
 */
#include "fdmd_plugin.h"

#include <stdlib.h>
#include <string.h>

#ifndef PLUGIN_ABI_MAJOR
#define PLUGIN_ABI_MAJOR FDMD_ABI_MAJOR
#endif

typedef struct {
    const FdmdHostApiV1 *host;
    char last_error[128];
} ctx_t;

static FdmdBytes text(const char *s) {
    FdmdBytes b = {(const uint8_t *)s, strlen(s)};
    return b;
}

static int starts_with(FdmdBytes data, const char *word) {
    size_t n = strlen(word);
    return data.len >= n && memcmp(data.ptr, word, n) == 0;
}

static FdmdRc c_init(const FdmdHostApiV1 *host, FdmdBytes config, void **ctx_out) {
    (void)config;
    if (ctx_out == NULL) return FDMD_RC_BAD_ARGUMENT;
    ctx_t *c = calloc(1, sizeof *c);
    if (c == NULL) return FDMD_RC_ERROR;
    c->host = host;
    if (host != NULL && host->log != NULL) host->log(host->host_ctx, FDMD_LOG_INFO, text("c-test plugin ready"));
    *ctx_out = c;
    return FDMD_RC_OK;
}

struct reply {
    uint8_t buf[4096];
    size_t len;
};

/* The host's reply is copied into memory this plugin owns. */
static void copy_reply(void *sink_ctx, FdmdBytes bytes) {
    struct reply *r = sink_ctx;
    size_t n = bytes.len;
    if (n > sizeof r->buf - r->len) n = sizeof r->buf - r->len;
    if (n > 0) memcpy(r->buf + r->len, bytes.ptr, n);
    r->len += n;
}

static FdmdRc c_handle(void *vctx, const FdmdInput *in, FdmdEmitFn emit, void *emit_ctx) {
    ctx_t *c = vctx;
    if (c == NULL || in == NULL) return FDMD_RC_BAD_ARGUMENT;
    if (in->kind != FDMD_INPUT_DATA) return FDMD_RC_OK;
    if (starts_with(in->data, "STATUS")) {
        struct reply r;
        r.len = 0;
        if (c->host == NULL || c->host->submit == NULL) return FDMD_RC_UNAVAILABLE;
        FdmdRc rc = c->host->submit(c->host->host_ctx, text("{\"v\":1,\"type\":\"status\"}"), copy_reply, &r);
        if (rc != FDMD_RC_OK) {
            strcpy(c->last_error, "status request failed");
            return FDMD_RC_ERROR;
        }
        FdmdBytes out = {r.buf, r.len};
        emit(emit_ctx, FDMD_OUTPUT_WRITE, in->conn, out);
        emit(emit_ctx, FDMD_OUTPUT_WRITE, in->conn, text("\n"));
        return FDMD_RC_OK;
    }
    if (starts_with(in->data, "FAIL")) {
        strcpy(c->last_error, "FAIL requested by the client");
        return FDMD_RC_ERROR;
    }
    if (starts_with(in->data, "ABORT")) abort();
    emit(emit_ctx, FDMD_OUTPUT_WRITE, in->conn, text("C:"));
    emit(emit_ctx, FDMD_OUTPUT_WRITE, in->conn, in->data);
    return FDMD_RC_OK;
}

static void c_last_error(void *vctx, FdmdSinkFn sink, void *sink_ctx) {
    ctx_t *c = vctx;
    sink(sink_ctx, text(c != NULL ? c->last_error : "init failed"));
}

static void c_shutdown(void *vctx) { free(vctx); }

static const char NAME[] = "c-test";
static const char VERSION[] = "1.0.0";
static const char BUILT_WITH[] = "cc against fdmd_plugin.h";

static const FdmdPluginV1 TABLE = {
    PLUGIN_ABI_MAJOR,
    FDMD_ABI_MINOR,
    sizeof(FdmdPluginV1),
    {(const uint8_t *)NAME, sizeof NAME - 1},
    {(const uint8_t *)VERSION, sizeof VERSION - 1},
    {(const uint8_t *)BUILT_WITH, sizeof BUILT_WITH - 1},
    c_init,
    c_handle,
    NULL, /* health: absent slots are allowed */
    c_shutdown,
    c_last_error,
};

#ifndef NO_ENTRY
FdmdRc fdmd_plugin_entry_v1(const FdmdHostApiV1 *host, const FdmdPluginV1 **out) {
    (void)host;
    if (out == NULL) return FDMD_RC_BAD_ARGUMENT;
    *out = &TABLE;
    return FDMD_RC_OK;
}
#else
FdmdRc fdmd_plugin_entry_v0(const FdmdHostApiV1 *host, const FdmdPluginV1 **out) {
    (void)host;
    *out = &TABLE;
    return FDMD_RC_OK;
}
#endif

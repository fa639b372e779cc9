/*
 * c-admission: a warden admission policy in C.
 *
 * Refuses the client addresses listed, one per line, in the file `deny` of
 * the directory the configuration grants the plugin
 * (`[plugin.c-admission] directory = "..."`, seen by the plugin at
 * `/grant`), and holds back for a second a source that opened more than
 * BURST connections in the last one. The same policy as
 * ../../python/admission/app.py.
 *
 * Build it into a component, test it against its scenario, then drop the
 * `.wasm` into warden's `plugins_dir`:
 *
 *     ./build.sh c-admission.wasm
 *     warden policy test c-admission.wasm scenario.toml
 *
 * The bindings come from `wit-bindgen c` (build.sh generates them into a
 * temporary directory): admission_plugin.h declares the two functions this
 * file defines, `exports_warden_policy_plugin_describe` and
 * `exports_warden_policy_admission_admit`, and the import
 * `warden_policy_host_log`.
 *
 * Memory across the component boundary, as the generated glue does it:
 *
 * - Arguments of an exported function (`service`, `connection`) belong to
 *   the function: their strings were allocated in this module's memory by
 *   the host, and the plugin frees them, with the generated `*_free`
 *   helpers, once it no longer reads them.
 * - What an exported function returns is freed by the generated
 *   post-return function with free(): every string or list in it must come
 *   from malloc, e.g. `admission_plugin_string_dup`, never a string
 *   literal set with `admission_plugin_string_set`.
 * - Arguments of an imported function (`warden_policy_host_log`) stay the
 *   caller's: the host copies them, so literals and stack buffers are fine,
 *   and whatever the caller allocated for the call it frees afterwards.
 */

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "admission_plugin.h"

/* A source opening more connections than this in one second waits. */
#define BURST 5

/* How long it waits, in milliseconds, before it is decided again. */
#define HOLD_MS 1000

/* The deny list in the granted directory. */
#define DENY_FILE "/grant/deny"

/* A borrowed view of a string literal, for arguments of imports only. */
static admission_plugin_string_t borrowed(const char *s)
{
    admission_plugin_string_t out;
    admission_plugin_string_set(&out, s);
    return out;
}

/*
 * Whether `address` (not NUL-terminated: WIT strings are pointer and
 * length) is on the deny list. The file is read on every call, so an edit
 * takes effect at once; a missing file, or no grant at all, is an empty
 * list. Lines are trimmed of surrounding whitespace; empty lines and lines
 * starting with '#' are skipped.
 */
static bool denied(const admission_plugin_string_t *address)
{
    FILE *file = fopen(DENY_FILE, "r");
    if (file == NULL)
        return false;

    bool found = false;
    char *line = NULL;
    size_t capacity = 0;
    ssize_t length;
    while (!found && (length = getline(&line, &capacity, file)) != -1) {
        if (line[0] == '#')
            continue;
        const char *start = line;
        const char *end = line + length;
        while (start < end && isspace((unsigned char)*start))
            start++;
        while (end > start && isspace((unsigned char)end[-1]))
            end--;
        size_t n = (size_t)(end - start);
        found = n > 0 && n == address->len && memcmp(start, address->ptr, n) == 0;
    }
    free(line);
    fclose(file);
    return found;
}

/* Logs, at INFO, that `address` is refused, with the service's name. */
static void log_refusal(const admission_plugin_string_t *address,
                        const admission_plugin_string_t *service_name)
{
    /* The message is built in a buffer this function owns and frees: the
     * host copies an import's arguments and frees none of them. */
    const char *format = "refusing %.*s: on the deny list";
    int length = snprintf(NULL, 0, format, (int)address->len, (const char *)address->ptr);
    if (length < 0)
        return;
    char *message = malloc((size_t)length + 1);
    if (message == NULL)
        return;
    snprintf(message, (size_t)length + 1, format, (int)address->len, (const char *)address->ptr);

    admission_plugin_string_t text = { (uint8_t *)message, (size_t)length };
    /* The field's value borrows the service's name: still owned by admit,
     * which frees it after this call. */
    admission_plugin_tuple2_string_string_t field = { borrowed("service"), *service_name };
    admission_plugin_list_tuple2_string_string_t fields = { &field, 1 };
    warden_policy_host_log(WARDEN_POLICY_HOST_LEVEL_INFO, &text, &fields);

    free(message);
}

void exports_warden_policy_plugin_describe(exports_warden_policy_plugin_identity_t *ret)
{
    /* Everything returned is freed by the post-return glue: duplicate. */
    admission_plugin_string_dup(&ret->name, "c-admission");
    admission_plugin_string_dup(&ret->version, "0.1.0");
    admission_plugin_string_dup(&ret->description,
                                "refuse denied addresses, hold back bursts from one source");

    ret->services.len = 1;
    ret->services.ptr = malloc(sizeof *ret->services.ptr * ret->services.len);
    if (ret->services.ptr == NULL)
        abort(); /* a trap: warden refuses the plugin at load */
    admission_plugin_string_dup(&ret->services.ptr[0], "*-login");
}

void exports_warden_policy_admission_admit(exports_warden_policy_admission_service_t *service,
                                           exports_warden_policy_admission_connection_t *connection,
                                           exports_warden_policy_admission_source_counts_t *counts,
                                           exports_warden_policy_admission_millis_t now_ms,
                                           exports_warden_policy_admission_verdict_t *ret)
{
    (void)now_ms;
    const admission_plugin_option_string_t *address = &connection->peer.address;

    if (address->is_some && denied(&address->val)) {
        log_refusal(&address->val, &service->name);
        ret->tag = EXPORTS_WARDEN_POLICY_ADMISSION_VERDICT_REJECT;
        /* Returned, so allocated: the post-return glue frees it. */
        admission_plugin_string_dup(&ret->val.reject, "deny-list");
    } else if (counts->last_second > BURST) {
        ret->tag = EXPORTS_WARDEN_POLICY_ADMISSION_VERDICT_DELAY;
        ret->val.delay = HOLD_MS;
    } else {
        ret->tag = EXPORTS_WARDEN_POLICY_ADMISSION_VERDICT_ACCEPT;
    }

    /* The arguments are this function's to free (counts holds no
     * pointers). Nothing may read them after this. */
    exports_warden_policy_admission_service_free(service);
    exports_warden_policy_admission_connection_free(connection);
}

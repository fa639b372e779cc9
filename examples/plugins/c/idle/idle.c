/*
 * c-idle: a warden idle policy in C.
 *
 * Never retires a process younger than ten seconds; otherwise asks the
 * idle processes beyond `process-min-avail` to exit, the oldest first, and
 * never more than were idle all along since the last call (`lowwater`).
 * The same policy as ../../python/idle/app.py.
 *
 * Build it into a component, test it against its scenario, then drop the
 * `.wasm` into warden's `plugins_dir`:
 *
 *     ./build.sh c-idle.wasm
 *     warden policy test c-idle.wasm ../../scenarios/idle.toml
 *
 * The bindings come from `wit-bindgen c` (build.sh generates them into a
 * temporary directory): idle_plugin.h declares the two functions this file
 * defines, `exports_warden_policy_plugin_describe` and
 * `exports_warden_policy_idle_retire`, and the import
 * `warden_policy_host_log`.
 *
 * Memory across the component boundary, as the generated glue does it:
 *
 * - Arguments of an exported function (`service`, `processes`) belong to
 *   the function: the host allocated them in this module's memory, and the
 *   plugin frees them, with the generated `*_free` helpers, once it no
 *   longer reads them.
 * - What an exported function returns is freed by the generated
 *   post-return function with free(): every string or list in it must come
 *   from malloc (or `idle_plugin_string_dup`), never a literal or a static
 *   buffer. An empty list may be { NULL, 0 }: nothing is freed then.
 * - Arguments of an imported function (`warden_policy_host_log`) stay the
 *   caller's: the host copies them, so literals and stack buffers are fine,
 *   and whatever the caller allocated for the call it frees afterwards.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "idle_plugin.h"

/* A process younger than this, in milliseconds, is never retired. */
#define YOUNG_MS 10000

typedef warden_policy_types_process_t process_t;

/* malloc that traps when memory runs out: warden then fails the call and
 * uses the next decision in the service's chain. */
static void *allocate(size_t size)
{
    void *p = malloc(size);
    if (p == NULL && size > 0)
        abort();
    return p;
}

/* A borrowed view of a string literal, for arguments of imports only. */
static idle_plugin_string_t borrowed(const char *s)
{
    idle_plugin_string_t out;
    idle_plugin_string_set(&out, s);
    return out;
}

/* Whether `p` may be retired at `now_ms`: idle, not already asked to exit,
 * and at least YOUNG_MS old (a start time after now is young). */
static bool retirable(const process_t *p, uint64_t now_ms)
{
    return p->idle_since_ms.is_some && !p->asked_to_exit_ms.is_some && p->started_ms <= now_ms &&
           now_ms - p->started_ms >= YOUNG_MS;
}

/* Oldest first. The candidates point into one array, in the host's order,
 * so comparing the pointers on a tie keeps that order, as a stable sort
 * would. */
static int oldest_first(const void *a, const void *b)
{
    const process_t *p = *(const process_t *const *)a;
    const process_t *q = *(const process_t *const *)b;
    if (p->started_ms != q->started_ms)
        return p->started_ms < q->started_ms ? -1 : 1;
    return p < q ? -1 : p > q;
}

/* Logs, at DEBUG, how many processes of the service are asked to exit. */
static void log_asking(size_t count, const idle_plugin_string_t *service_name)
{
    char message[512];
    int length = snprintf(message, sizeof message, "asking %zu idle processes of %.*s to exit",
                          count, (int)service_name->len, (const char *)service_name->ptr);
    if (length < 0)
        return;
    if ((size_t)length >= sizeof message)
        length = sizeof message - 1; /* cut, as the host would cut it anyway */

    /* Imports borrow their arguments: a stack buffer and the service's
     * name (still owned by retire, which frees it afterwards) will do. */
    idle_plugin_string_t text = { (uint8_t *)message, (size_t)length };
    idle_plugin_tuple2_string_string_t field = { borrowed("service"), *service_name };
    idle_plugin_list_tuple2_string_string_t fields = { &field, 1 };
    warden_policy_host_log(WARDEN_POLICY_HOST_LEVEL_DEBUG, &text, &fields);
}

void exports_warden_policy_plugin_describe(exports_warden_policy_plugin_identity_t *ret)
{
    /* Everything returned is freed by the post-return glue: duplicate. */
    idle_plugin_string_dup(&ret->name, "c-idle");
    idle_plugin_string_dup(&ret->version, "0.1.0");
    idle_plugin_string_dup(&ret->description,
                           "retire idle processes beyond process-min-avail, never one younger than 10 s");

    ret->services.len = 1;
    ret->services.ptr = allocate(sizeof *ret->services.ptr * ret->services.len);
    idle_plugin_string_dup(&ret->services.ptr[0], "*");
}

void exports_warden_policy_idle_retire(exports_warden_policy_idle_service_t *service,
                                       exports_warden_policy_idle_list_process_t *processes,
                                       uint32_t lowwater,
                                       exports_warden_policy_idle_millis_t now_ms,
                                       exports_warden_policy_idle_list_action_t *ret)
{
    ret->ptr = NULL;
    ret->len = 0;

    /* The candidates, as pointers into `processes`. */
    const process_t **idle = allocate(sizeof *idle * processes->len);
    size_t count = 0;
    for (size_t i = 0; i < processes->len; i++) {
        if (retirable(&processes->ptr[i], now_ms))
            idle[count++] = &processes->ptr[i];
    }

    /* How many to retire: those idle all along since the last call, less
     * the ones process-min-avail keeps. Signed: it may well be negative. */
    int64_t beyond = (int64_t)(lowwater < count ? lowwater : count) - (int64_t)service->process_min_avail;
    if (beyond > 0) {
        qsort(idle, count, sizeof *idle, oldest_first);

        /* Returned, so allocated with malloc: the post-return glue frees
         * the list. */
        ret->len = (size_t)beyond;
        ret->ptr = allocate(sizeof *ret->ptr * ret->len);
        for (size_t i = 0; i < ret->len; i++) {
            ret->ptr[i].tag = EXPORTS_WARDEN_POLICY_IDLE_ACTION_ASK_TO_EXIT;
            ret->ptr[i].val.ask_to_exit = idle[i]->pid;
        }
        log_asking(ret->len, &service->name);
    }
    free(idle);

    /* The arguments are this function's to free. Nothing may read them
     * (nor `idle`, which pointed into them) after this. */
    exports_warden_policy_idle_service_free(service);
    exports_warden_policy_idle_list_process_free(processes);
}

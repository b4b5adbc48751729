/* quota_text.h - a user's limits as people write and read them: on the
 * command line (`traind user set-quota alice --running-jobs 2
 * --dataset-gb 50 --gpus unlimited --queued-jobs default`), in `traind user
 * list`, in the JSON of /v1/users, and in the audit trail's detail.
 *
 * Three kinds of value, the same everywhere:
 *   a number >= 0     the user's own limit
 *   default           the daemon's default (serve --quota-*); JSON null
 *   unlimited         no limit for this user, whatever the default
 * (storage/db.h: DB_QUOTA_DEFAULT, DB_QUOTA_UNLIMITED).
 */
#ifndef TRAIND_SERVER_QUOTA_TEXT_H
#define TRAIND_SERVER_QUOTA_TEXT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/quota.h"
#include "storage/db.h"

/* A command-line value: "default", "unlimited", or a number times scale
 * (1 for counts and bytes: an integer; 1e9 for --*-gb: a decimal such as
 * 0.5). 0 with the value in *out, or -1 with an error ("expected an integer
 * >= 0, 'default' or 'unlimited', got 'x'"). */
int quota_text_parse(const char *text, double scale, int64_t *out);

/* "1.5 MB", "50.0 GB", "512 B": bytes in decimal units (as quota.h's
 * messages count them). */
const char *quota_text_bytes(int64_t bytes, char *buf, size_t size);

/* One limit as `traind user list` shows it: "default", "unlimited", "2",
 * "50.0 GB" (bytes for the byte limits). */
const char *quota_text_limit(QuotaLimit k, int64_t v, char *buf, size_t size);

/* A quota as a JSON object, one member per limit: its value, "unlimited"
 * for no limit, null for the daemon's default (a new reference; NULL when
 * out of memory). effective: q is quota_effective's, the defaults filled
 * in, where any value below 0 is no limit ("unlimited", never null). */
json_t *quota_text_json(const DbQuota *q, bool effective);

/* A PATCH's "quota" object into *change: each member a known limit, its
 * value an integer >= 0, "unlimited" or null (the default); limits not
 * named are DB_QUOTA_UNCHANGED. 0, or -1 with error_at the member's path
 * ("quota.gpus: expected an integer >= 0, \"unlimited\" or null"). */
int quota_text_from_json(const json_t *obj, DbQuota *change);

/* The limits a change sets, for the audit trail: "running_jobs=2
 * gpus=unlimited queued_jobs=default" ("" when it sets none). */
const char *quota_text_describe(const DbQuota *change, char *buf, size_t size);

#endif

/* quota.h - what one user may take of a shared server, and the sentence
 * that says they have reached it.
 *
 * Each user's limits are their own (set by an admin: traind user
 * set-quota, PATCH /v1/users/{name}) or the daemon's defaults (serve
 * --quota-*). A limit below 0 is no limit. Byte and queued-job limits are
 * checked when something is submitted (429 over them); running-job and GPU
 * limits make a queued job wait (server/queue_plan.h), and say so.
 */
#ifndef TRAIND_SERVER_QUOTA_H
#define TRAIND_SERVER_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/db.h"

/* The user's limits, each field the user's own or else the default. */
DbQuota quota_effective(const DbQuota *user, const DbQuota *defaults);

/* The limits a quota holds, by name: "running_jobs", "queued_jobs",
 * "gpus", "dataset_bytes", "checkpoint_bytes". */
typedef enum {
    QUOTA_RUNNING_JOBS,
    QUOTA_QUEUED_JOBS,
    QUOTA_GPUS,
    QUOTA_DATASET_BYTES,
    QUOTA_CHECKPOINT_BYTES,
    QUOTA_NUM_LIMITS,
} QuotaLimit;

const char *quota_limit_name(QuotaLimit k);
int64_t quota_get(const DbQuota *q, QuotaLimit k);
void quota_set(DbQuota *q, QuotaLimit k, int64_t v);
int64_t quota_holding(const DbUsage *u, QuotaLimit k);

/* Whether `user`, holding `held`, may add `adding` of limit k under q.
 * false with the reason in msg (size bytes): "alice has 40 of 40 queued
 * jobs", "alice has 3.2 GB of datasets; 1.0 GB more would pass the quota
 * of 4.0 GB". */
bool quota_allows(const char *user, const DbQuota *q, QuotaLimit k, int64_t held, int64_t adding,
                  char *msg, size_t size);

/* The user's quota and holdings now (db_user_holdings), in one call:
 * DB_OK, or a storage status with the error. */
int quota_lookup(Db *db, int64_t user_id, const DbQuota *defaults, DbQuota *q, DbUsage *held,
                 char *name, size_t name_size);

#endif

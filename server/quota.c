/* quota.c - per-user limits with the daemon's defaults; see quota.h. */
#include "server/quota.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "server/quota_text.h"

static const char *const names[QUOTA_NUM_LIMITS] = {"running_jobs", "queued_jobs", "gpus",
                                                     "dataset_bytes", "checkpoint_bytes"};

const char *quota_limit_name(QuotaLimit k) {
    return (unsigned)k < QUOTA_NUM_LIMITS ? names[k] : "?";
}

static int64_t *field(DbQuota *q, QuotaLimit k) {
    switch (k) {
    case QUOTA_RUNNING_JOBS: return &q->running_jobs;
    case QUOTA_QUEUED_JOBS: return &q->queued_jobs;
    case QUOTA_GPUS: return &q->gpus;
    case QUOTA_DATASET_BYTES: return &q->dataset_bytes;
    default: return &q->checkpoint_bytes;
    }
}

int64_t quota_get(const DbQuota *q, QuotaLimit k) { return *field((DbQuota *)q, k); }

void quota_set(DbQuota *q, QuotaLimit k, int64_t v) { *field(q, k) = v; }

int64_t quota_holding(const DbUsage *u, QuotaLimit k) {
    switch (k) {
    case QUOTA_RUNNING_JOBS: return u->running_jobs;
    case QUOTA_QUEUED_JOBS: return u->queued_jobs;
    case QUOTA_GPUS: return u->gpus;
    case QUOTA_DATASET_BYTES: return u->dataset_bytes;
    default: return u->checkpoint_bytes;
    }
}

DbQuota quota_effective(const DbQuota *user, const DbQuota *defaults) {
    DbQuota q = *user;
    for (int k = 0; k < QUOTA_NUM_LIMITS; k++)
        if (quota_get(&q, k) == DB_QUOTA_DEFAULT) quota_set(&q, k, quota_get(defaults, k));
    return q;
}

bool quota_allows(const char *user, const DbQuota *q, QuotaLimit k, int64_t held, int64_t adding,
                  char *msg, size_t size) {
    int64_t limit = quota_get(q, k);
    if (limit < 0 || held + adding <= limit) return true;
    char a[32], b[32], c[32];
    switch (k) {
    case QUOTA_DATASET_BYTES:
    case QUOTA_CHECKPOINT_BYTES:
        snprintf(msg, size, "%s has %s of %s; %s more would pass the quota of %s", user,
                 quota_text_bytes(held, a, sizeof a), k == QUOTA_DATASET_BYTES ? "datasets" : "checkpoints",
                 quota_text_bytes(adding, b, sizeof b), quota_text_bytes(limit, c, sizeof c));
        break;
    case QUOTA_GPUS:
        snprintf(msg, size, "%s uses %lld of %lld GPUs", user, (long long)held, (long long)limit);
        break;
    default:
        snprintf(msg, size, "%s has %lld of %lld %s jobs", user, (long long)held,
                 (long long)limit, k == QUOTA_RUNNING_JOBS ? "running" : "queued");
    }
    return false;
}

int quota_lookup(Db *db, int64_t user_id, const DbQuota *defaults, DbQuota *q, DbUsage *held,
                 char *name, size_t name_size) {
    DbUser u;
    int rc = db_user_get(db, user_id, &u);
    if (rc != DB_OK) return rc;
    *q = quota_effective(&u.quota, defaults);
    snprintf(name, name_size, "%s", u.name);
    return db_user_holdings(db, user_id, held);
}

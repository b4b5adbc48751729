/* cmd_user.c - `traind user add|list|revoke|rotate|set-quota`; see
 * cmd_user.h. Arguments are read into UserArgs, the data dir's database
 * opened (only one that exists, unless --create), and one storage call
 * made per command, followed by its audit entry. */
#include "server/cmd_user.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "server/quota_text.h"
#include "storage/db.h"

typedef struct {
    const char *cmd;      /* "add", "list", ... */
    const char *name;     /* the user, NULL for list */
    const char *data_dir; /* ./var unless given */
    bool admin, create;
    DbQuota quota; /* set-quota: each limit DB_QUOTA_UNCHANGED unless given */
} UserArgs;

static void user_usage(FILE *out) {
    fprintf(out,
            "usage: traind user add NAME [--admin] [--data-dir DIR]      prints its token\n"
            "       traind user list [--data-dir DIR]\n"
            "       traind user revoke NAME [--data-dir DIR]\n"
            "       traind user rotate NAME [--data-dir DIR]             prints the new token\n"
            "       traind user set-quota NAME [--running-jobs N] [--queued-jobs N] [--gpus N]\n"
            "           [--dataset-bytes B | --dataset-gb G]\n"
            "           [--checkpoint-bytes B | --checkpoint-gb G] [--data-dir DIR]\n"
            "each limit: a number, 'default' (the daemon's --quota-* default) or 'unlimited';\n"
            "DIR (./var) must hold a database, unless --create is given\n");
}

/* set-quota's options: the limit each sets, and the unit of its value */
static const struct {
    const char *option;
    QuotaLimit limit;
    double scale;
} quota_options[] = {
    {"--running-jobs", QUOTA_RUNNING_JOBS, 1},   {"--queued-jobs", QUOTA_QUEUED_JOBS, 1},
    {"--gpus", QUOTA_GPUS, 1},                   {"--dataset-bytes", QUOTA_DATASET_BYTES, 1},
    {"--dataset-gb", QUOTA_DATASET_BYTES, 1e9},  {"--checkpoint-bytes", QUOTA_CHECKPOINT_BYTES, 1},
    {"--checkpoint-gb", QUOTA_CHECKPOINT_BYTES, 1e9},
};
#define NUM_QUOTA_OPTIONS ((int)(sizeof quota_options / sizeof *quota_options))

/* A set-quota option and its value: 1 when `opt` is one, 0 when not, -1
 * after a message for a bad value or a limit given twice. */
static int quota_option(UserArgs *a, const char *opt, const char *value) {
    for (int i = 0; i < NUM_QUOTA_OPTIONS; i++) {
        if (strcmp(opt, quota_options[i].option) != 0) continue;
        QuotaLimit k = quota_options[i].limit;
        int64_t v;
        if (quota_get(&a->quota, k) != DB_QUOTA_UNCHANGED) {
            fprintf(stderr, "traind user set-quota: %s: the %s limit is given twice\n", opt,
                    quota_limit_name(k));
            return -1;
        }
        if (!value || quota_text_parse(value, quota_options[i].scale, &v) != 0) {
            fprintf(stderr, "traind user set-quota: %s: %s\n", opt,
                    value ? error_get() : "needs a value");
            return -1;
        }
        quota_set(&a->quota, k, v);
        return 1;
    }
    return 0;
}

/* 0, or 2 after a message. */
static int parse_args(int argc, char **argv, UserArgs *a) {
    *a = (UserArgs){.data_dir = "./var"};
    for (int k = 0; k < QUOTA_NUM_LIMITS; k++) quota_set(&a->quota, k, DB_QUOTA_UNCHANGED);
    if (argc < 1) return user_usage(stderr), 2;
    a->cmd = argv[0];
    if (!strcmp(a->cmd, "-h") || !strcmp(a->cmd, "--help")) {
        user_usage(stdout);
        exit(0);
    }
    bool set_quota = !strcmp(a->cmd, "set-quota");
    if (strcmp(a->cmd, "add") && strcmp(a->cmd, "list") && strcmp(a->cmd, "revoke") &&
        strcmp(a->cmd, "rotate") && !set_quota) {
        fprintf(stderr, "traind user: unknown command '%s'\n", a->cmd);
        return user_usage(stderr), 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        int q = set_quota ? quota_option(a, s, next) : 0;
        if (q < 0) return 2;
        if (q > 0)
            i++;
        else if (!strcmp(s, "--admin") && !strcmp(a->cmd, "add"))
            a->admin = true;
        else if (!strcmp(s, "--create"))
            a->create = true;
        else if (!strcmp(s, "--data-dir") && next)
            a->data_dir = argv[++i];
        else if (s[0] != '-' && !a->name && strcmp(a->cmd, "list") != 0)
            a->name = s;
        else {
            fprintf(stderr, "traind user %s: unexpected argument '%s'\n", a->cmd, s);
            return user_usage(stderr), 2;
        }
    }
    if (!a->name && strcmp(a->cmd, "list") != 0) {
        fprintf(stderr, "traind user %s: which user? (NAME is missing)\n", a->cmd);
        return user_usage(stderr), 2;
    }
    bool any = false;
    for (int k = 0; k < QUOTA_NUM_LIMITS; k++) any |= quota_get(&a->quota, k) != DB_QUOTA_UNCHANGED;
    if (set_quota && !any) {
        fprintf(stderr, "traind user set-quota: no limit given (--running-jobs, --queued-jobs, "
                        "--gpus, --dataset-gb, ...)\n");
        return 2;
    }
    return 0;
}

/* The data dir's database; NULL after a message when it has none (and
 * --create is not given) or it cannot be opened. */
static Db *open_db(const UserArgs *a) {
    char path[4200];
    snprintf(path, sizeof path, "%s/traind.db", a->data_dir);
    if (!a->create && access(path, F_OK) != 0 && (errno == ENOENT || errno == ENOTDIR)) {
        fprintf(stderr,
                "traind user %s: %s holds no traind database (%s); start `traind serve "
                "--data-dir %s` once, or pass --create to make one\n",
                a->cmd, a->data_dir, path, a->data_dir);
        return NULL;
    }
    /* an older database is the daemon's to upgrade: one of the version
     * before may be serving it still, and would write it on as the old
     * schema has it (metric_blocks, made by version 4, it never fills) */
    int version = 0;
    if (access(path, F_OK) == 0 && db_file_schema_version(a->data_dir, &version) == 0 &&
        version < DB_SCHEMA_VERSION) {
        fprintf(stderr,
                "traind user %s: %s is of schema version %d, older than this traind's %d: "
                "start this traind's `serve --data-dir %s` once (it upgrades it), then run "
                "traind user again\n",
                a->cmd, path, version, DB_SCHEMA_VERSION, a->data_dir);
        return NULL;
    }
    Db *db = db_open(a->data_dir);
    if (!db) fprintf(stderr, "traind user %s: %s\n", a->cmd, error_get());
    return db;
}

/* The audit entry of a change already made: 0, or 1 after saying that the
 * change stands without its entry. */
static int audit(Db *db, const UserArgs *a, const char *action, const char *detail) {
    char target[DB_USER_NAME_MAX + 8];
    snprintf(target, sizeof target, "user %s", a->name);
    if (db_audit_add(db, DB_AUDIT_CLI_ACTOR, action, target, detail) == DB_OK) return 0;
    fprintf(stderr, "traind user %s: done, but its audit entry was not written: %s\n", a->cmd,
            error_get());
    return 1;
}

/* ---- list ---- */

#define LIST_COLUMNS 9
#define LIST_CELL (DB_USER_NAME_MAX + 8)

/* "2024-05-01T12:00:00Z" (seconds are enough here), or "-" for 0. */
static const char *short_time(int64_t ms, char *buf, size_t size) {
    if (!ms) return snprintf(buf, size, "-"), buf;
    char full[40];
    db_format_time(ms, full, sizeof full);
    snprintf(buf, size, "%.19sZ", full);
    return buf;
}

/* One row: the user, then for each limit "what they hold/their limit". */
static void list_row(const DbUser *u, const DbUsage *held, char cells[][LIST_CELL]) {
    snprintf(cells[0], LIST_CELL, "%s", u->name);
    snprintf(cells[1], LIST_CELL, "%s", u->admin ? "admin" : "user");
    short_time(u->created_at, cells[2], LIST_CELL);
    short_time(u->revoked_at, cells[3], LIST_CELL);
    for (int k = 0; k < QUOTA_NUM_LIMITS; k++) {
        char have[24], limit[24];
        int64_t h = quota_holding(held, k);
        if (k == QUOTA_DATASET_BYTES || k == QUOTA_CHECKPOINT_BYTES)
            quota_text_bytes(h, have, sizeof have);
        else
            snprintf(have, sizeof have, "%lld", (long long)h);
        snprintf(cells[4 + k], LIST_CELL, "%s/%s", have,
                 quota_text_limit(k, quota_get(&u->quota, k), limit, sizeof limit));
    }
}

static void print_table(char (*cells)[LIST_COLUMNS][LIST_CELL], int rows) {
    int width[LIST_COLUMNS] = {0};
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < LIST_COLUMNS; c++) {
            int w = (int)strlen(cells[r][c]);
            if (w > width[c]) width[c] = w;
        }
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c + 1 < LIST_COLUMNS; c++) printf("%-*s  ", width[c], cells[r][c]);
        printf("%s\n", cells[r][LIST_COLUMNS - 1]);
    }
}

static int cmd_list(Db *db) {
    static const char *const head[LIST_COLUMNS] = {
        "NAME", "ROLE", "CREATED", "REVOKED", "RUNNING", "QUEUED", "GPUS", "DATASETS",
        "CHECKPOINTS"};
    DbUser *users = NULL;
    int n = 0;
    if (db_user_list(db, &users, &n) != DB_OK) {
        fprintf(stderr, "traind user list: %s\n", error_get());
        return 1;
    }
    char(*cells)[LIST_COLUMNS][LIST_CELL] = calloc((size_t)n + 1, sizeof *cells);
    if (!cells) {
        free(users);
        fprintf(stderr, "traind user list: out of memory\n");
        return 1;
    }
    for (int c = 0; c < LIST_COLUMNS; c++) snprintf(cells[0][c], LIST_CELL, "%s", head[c]);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        DbUsage held;
        if (db_user_holdings(db, users[i].id, &held) != DB_OK) {
            fprintf(stderr, "traind user list: %s: %s\n", users[i].name, error_get());
            rc = 1;
        } else
            list_row(&users[i], &held, cells[i + 1]);
    }
    if (!rc) {
        print_table(cells, n + 1);
        printf("(each limit: held/limit; 'default' is the daemon's --quota-* default)\n");
    }
    free(cells);
    free(users);
    return rc;
}

/* ---- the changes ---- */

static int cmd_set_quota(Db *db, const UserArgs *a) {
    if (db_user_set_quota(db, a->name, &a->quota) != DB_OK) {
        fprintf(stderr, "traind user set-quota: %s\n", error_get());
        return 1;
    }
    char detail[256];
    quota_text_describe(&a->quota, detail, sizeof detail);
    printf("%s: %s\n", a->name, detail);
    return audit(db, a, "user.quota", detail);
}

static int run(Db *db, const UserArgs *a) {
    char token[DB_TOKEN_LEN + 1];
    int st;
    if (!strcmp(a->cmd, "list")) return cmd_list(db);
    if (!strcmp(a->cmd, "set-quota")) return cmd_set_quota(db, a);
    if (!strcmp(a->cmd, "add"))
        st = db_user_create(db, a->name, a->admin, NULL, token);
    else if (!strcmp(a->cmd, "rotate"))
        st = db_user_rotate(db, a->name, token);
    else
        st = db_user_revoke(db, a->name);
    if (st != DB_OK) {
        fprintf(stderr, "traind user %s: %s\n", a->cmd, error_get());
        return 1;
    }
    if (!strcmp(a->cmd, "revoke"))
        printf("%s: revoked; its token no longer works\n", a->name);
    else
        printf("%s\n", token); /* the only time it is shown */
    fflush(stdout);
    char action[32];
    snprintf(action, sizeof action, "user.%s", a->cmd);
    return audit(db, a, action, a->admin ? "admin" : NULL);
}

int cmd_user(int argc, char **argv) {
    UserArgs a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    Db *db = open_db(&a);
    if (!db) return 1;
    rc = run(db, &a);
    db_close(db);
    return rc;
}

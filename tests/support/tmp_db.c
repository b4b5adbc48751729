/* tmp_db.c - see tmp_db.h. */
#include "tests/support/tmp_db.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"
#include "tests/support/tmp_dir.h"

Db *tmp_db_open_alone(char *dir, size_t size, const char *tag) {
    tmp_dir_make(dir, size, tag);
    Db *db = db_open(dir);
    cr_assert(db, "db_open: %s", error_get());
    return db;
}

void tmp_db_open(TmpDb *t, const char *tag) {
    t->db = tmp_db_open_alone(t->dir, sizeof t->dir, tag);
    t->mw = metric_writer_start(t->db);
    cr_assert(t->mw, "%s", error_get());
}

void tmp_db_close(TmpDb *t) {
    metric_writer_stop(t->mw);
    db_close(t->db);
    tmp_dir_remove(t->dir);
}

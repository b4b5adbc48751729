/* tmp_db.c - see tmp_db.h. */
#include "tests/support/tmp_db.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"
#include "tests/support/tmp_dir.h"

void tmp_db_open(TmpDb *t, const char *tag) {
    tmp_dir_make(t->dir, sizeof t->dir, tag);
    t->db = db_open(t->dir);
    cr_assert(t->db, "%s", error_get());
    t->mw = metric_writer_start(t->db);
    cr_assert(t->mw, "%s", error_get());
}

void tmp_db_close(TmpDb *t) {
    metric_writer_stop(t->mw);
    db_close(t->db);
    tmp_dir_remove(t->dir);
}
